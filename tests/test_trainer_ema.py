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
