"""The speed switches reach the model through the trainer: FP8 linears (emulated on CPU)."""

import torch

from tests.trainer_setups import color_rewards, tiny_adapter, tiny_config
from vgrpo.trainer.trainer import Trainer


def test_fp8_switch_converts_linears_and_trains(tmp_path):
    from torchao.float8.float8_linear import Float8Linear

    cfg = tiny_config(tmp_path, parallel={"fp8": True}, finetune={"mode": "full"})
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards)
    converted = [n for n, m in trainer.adapter.denoiser.named_modules() if isinstance(m, Float8Linear)]
    assert converted and not any(n.startswith(("pos_embed", "time_text_embed", "proj_out")) for n in converted)
    before = {n: p.detach().clone() for n, p in trainer.adapter.denoiser.named_parameters()}
    trainer.train()
    assert all(torch.isfinite(torch.tensor(h["grad_norm"])) for h in trainer.history)
    moved = [n for n, p in trainer.adapter.denoiser.named_parameters() if not torch.equal(p, before[n])]
    assert any(n in {f"{c}.weight" for c in converted} for n in moved)
