"""EMA of the trainable parameters: the update rule against a plain loop, the swap and its exact restore."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vgrpo.trainer.ema import EMA


def _model(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)).to(dtype)
    m[0].bias.requires_grad_(False)  # frozen: not averaged
    return m


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_update_matches_reference_loop(dtype):
    model, decay = _model(dtype), 0.9
    ema = EMA(model, decay)
    assert set(ema.shadows) == {"0.weight", "1.weight", "1.bias"}
    ref = {n: p.detach().double().clone() for n, p in model.named_parameters() if p.requires_grad}
    for n_step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        d = min(decay, n_step / (n_step + 9))
        for n, p in model.named_parameters():
            if p.requires_grad:
                ref[n] = d * ref[n] + (1 - d) * p.detach().double()
    assert ema.num_updates == 5
    for n, s in ema.shadows.items():
        assert s.dtype == torch.float32
        torch.testing.assert_close(s.double(), ref[n], rtol=1e-6, atol=1e-6)


def test_averaged_swaps_in_and_restores_bitwise():
    model = _model()
    ema = EMA(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"):
        with ema.averaged(model) as m:
            assert m is model
            for n, s in ema.shadows.items():
                assert torch.equal(dict(model.named_parameters())[n], s)
            assert torch.equal(model[0].bias, before["0.bias"])  # frozen parameter untouched
            raise RuntimeError("boom")
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])


def test_state_dict_round_trip_and_mismatch():
    model = _model()
    ema = EMA(model, 0.99)
    with torch.no_grad():
        model[1].weight.mul_(3)
    ema.update(model)
    state = {k: v.clone() for k, v in ema.state_dict().items()}
    other = EMA(_model(), 0.99)
    other.load_state_dict(state)
    assert other.num_updates == 1
    for n in ema.shadows:
        assert torch.equal(other.shadows[n], ema.shadows[n])
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict({"num_updates": torch.tensor(1)})
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.0)
    with pytest.raises(ValueError, match="does not match"):
        ema.update(nn.Linear(3, 5))


def test_trainer_ema_is_checkpointed_and_resumes_exactly(tmp_path):
    from tests.test_checkpoint import EXACT_RESUME, assert_same_run
    from tests.trainer_setups import run, tiny_config
    from vgrpo.trainer.checkpoint import read_tensors

    common = dict(EXACT_RESUME, checkpoint=dict(every=2, keep_last=2), optim=dict(lr=1e-3, ema_decay=0.9))
    full = run(tiny_config(tmp_path / "a", job=dict(iterations=4), **common))
    run(tiny_config(tmp_path / "b", job=dict(iterations=2), **common))
    resumed = run(tiny_config(tmp_path / "b", job=dict(iterations=4), **common))
    assert_same_run(full.run_dir, resumed.run_dir, 4)  # the DCP shards hold the EMA too
    assert full.ema.num_updates == resumed.ema.num_updates == full.step == 8
    for name, shadow in full.ema.shadows.items():
        assert torch.equal(shadow, resumed.ema.shadows[name])
    saved = read_tensors(full.checkpointer.latest(), "ema")
    assert int(saved.pop("num_updates")) == 8
    assert saved.keys() == full.ema.shadows.keys() and all("lora_" in n for n in saved)
    params = dict(full.adapter.denoiser.named_parameters())
    for name, t in saved.items():
        assert torch.equal(t, full.ema.shadows[name])
    assert any(not torch.equal(t, params[n]) for n, t in saved.items())  # an average, not a copy


def test_resume_with_ema_switched_on_restarts_it(tmp_path, caplog):
    from tests.trainer_setups import run, tiny_config

    run(tiny_config(tmp_path, checkpoint=dict(every=1)))
    cfg = tiny_config(tmp_path, job=dict(iterations=3), optim=dict(lr=1e-3, ema_decay=0.5),
                      checkpoint=dict(every=1, allow_changes=["optim.ema_decay"]))
    trainer = run(cfg)
    assert "holds no EMA" in caplog.text
    assert trainer.ema.num_updates == trainer.step - 2 * 2  # steps after the resume only (mu=2, 1 minibatch)
