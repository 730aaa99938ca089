"""Adding a model family is one adapter class plus one registry entry: the config validation and the
trainer read `vgrpo.models.registry`, so a family registered here (and nowhere else) trains."""

from __future__ import annotations

import math
from typing import Sequence

import pytest
import torch
from torch import nn

from tests.trainer_setups import color_rewards, tiny_config
from vgrpo.models import registry
from vgrpo.models.base import Conditioning, ModelAdapter
from vgrpo.trainer.config import ConfigError, validate


class ToyAdapter(ModelAdapter):
    """A two-block MLP denoiser on [B, 3 * 4 * 4] latents, decoded to 4x4 RGB images."""

    latent_shape = (48,)

    def __init__(self, seed: int):
        torch.manual_seed(seed)
        self.denoiser = nn.Sequential(nn.Linear(48 + 8 + 1, 32), nn.SiLU(), nn.Linear(32, 48))

    def encode_prompts(self, prompts: Sequence[str]) -> Conditioning:
        """[P, 8]: the prompt's length and character sum, as features."""
        feats = [[len(p) / 50, sum(map(ord, p)) % 97 / 97] + [0.0] * 6 for p in prompts]
        return Conditioning({"text": torch.tensor(feats, device=self.device)})

    def null_conditioning(self, batch_size: int) -> Conditioning:
        return Conditioning({"text": torch.zeros(batch_size, 8, device=self.device)})

    def velocity(self, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.check_velocity_inputs(z, t, cond)
        x = torch.cat([z.float(), cond.tensors["text"].float(), t.float()[:, None]], dim=1)
        return self.denoiser(x)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(latents.float()).reshape(-1, 3, 4, 4)

    def transformer_blocks(self) -> list[nn.Module]:
        return [self.denoiser[0], self.denoiser[2]]

    def to(self, device, dtype):
        self.denoiser.to(device, dtype)
        return self


def _build(path, device, dtype, **options) -> ModelAdapter:
    return ToyAdapter(seed=0).to(device, dtype)


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "toy", registry.ModelFamily(_build, needs_path=False, takes_options=False))
    return "toy"


def test_unregistered_family_is_rejected_with_the_registry_names(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "toy", "init": "pretrained"})
    with pytest.raises(ConfigError, match=r"model.name must be shapes\|flux\|sd3, got 'toy'"):
        validate(cfg)


def test_random_init_needs_a_family_that_offers_it(tmp_path, toy_family):
    cfg = tiny_config(tmp_path, model={"name": toy_family, "init": "random"}, finetune={"mode": "full"})
    with pytest.raises(ConfigError, match=r"model.init=random exists only for the models \['shapes'\]"):
        validate(cfg)


def test_register_refuses_a_taken_name():
    with pytest.raises(ValueError, match="already registered"):
        registry.register("shapes", registry.FAMILIES["shapes"])


def test_a_registered_family_trains_one_iteration(tmp_path, toy_family):
    from vgrpo.trainer.metrics import read_metrics
    from vgrpo.trainer.trainer import Trainer

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\n")
    cfg = tiny_config(tmp_path, model={"name": toy_family, "init": "pretrained"}, finetune={"mode": "full"},
                      job={"iterations": 1}, rollout={"prompt_file": str(prompts)})
    with pytest.raises(ConfigError, match=f"rollout.prompt_file is required for model.name='{toy_family}'"):
        validate(tiny_config(tmp_path, model={"name": toy_family, "init": "pretrained"}), world_size=1)
    before = [p.detach().clone() for p in ToyAdapter(seed=0).denoiser.parameters()]
    trainer = Trainer(cfg, reward_factory=color_rewards)  # the model comes from the registry
    assert isinstance(trainer.adapter, ToyAdapter)
    trainer.train()
    rows = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if r.get("kind") == "train"]
    assert [r["iteration"] for r in rows] == [0]
    assert math.isfinite(rows[0]["policy_loss"]) and rows[0]["skipped_iteration"] == 0.0
    after = list(trainer.adapter.denoiser.parameters())
    assert any(not torch.equal(a.detach().cpu(), b) for a, b in zip(after, before)), "no parameter moved"
