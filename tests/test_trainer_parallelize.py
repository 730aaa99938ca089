"""Parallelism and fine-tuning options: LoRA target errors, activation checkpointing and
torch.compile change nothing but speed/memory."""

from __future__ import annotations

import pytest
import torch

from tests.trainer_setups import run, tiny_adapter, tiny_config
from vgrpo.trainer.config import FinetuneConfig
from vgrpo.trainer.metrics import read_metrics
from vgrpo.trainer.parallelize import apply_finetune_mode

KEYS = ("reward_mean", "policy_loss", "surrogate_mean", "ratio_min", "ratio_max", "grad_norm")


def rows(trainer):
    return read_metrics(trainer.run_dir / "metrics.jsonl", "train")


def test_lora_trains_only_adapters_and_bad_targets_are_named():
    cfg = tiny_config("unused")
    adapter = tiny_adapter(cfg, torch.device("cpu"))
    params = apply_finetune_mode(adapter.denoiser, FinetuneConfig(mode="lora", lora_rank=4))
    names = {n for n, p in adapter.denoiser.named_parameters() if p.requires_grad}
    assert params and all("lora_" in n for n in names)
    assert any(n.endswith("to_q.lora_A.default.weight") for n in names)
    other = tiny_adapter(cfg, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"lora_targets \['qkv'\] match no module.*to_q"):
        apply_finetune_mode(other.denoiser, FinetuneConfig(mode="lora", lora_targets=["qkv"]))


def test_activation_checkpointing_matches_plain_full_finetune(tmp_path):
    common = dict(finetune=dict(mode="full"), optim=dict(lr=1e-4), job=dict(iterations=2))
    plain = rows(run(tiny_config(tmp_path / "plain", **common)))
    ac = rows(run(tiny_config(tmp_path / "ac", parallel=dict(activation_checkpointing=True), **common)))
    for a, b in zip(plain, ac):
        assert b["ratio_first_absdev"] == 0.0
        for k in KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-7), k


@pytest.mark.compile
@pytest.mark.slow
def test_compiled_blocks_match_eager(tmp_path):
    common = dict(job=dict(iterations=1))
    eager = rows(run(tiny_config(tmp_path / "eager", **common)))[0]
    compiled = rows(run(tiny_config(tmp_path / "compiled", parallel=dict(compile=True), **common)))[0]
    assert compiled["ratio_first_absdev"] == 0.0
    for k in KEYS:
        assert compiled[k] == pytest.approx(eager[k], rel=1e-3, abs=1e-5), k
