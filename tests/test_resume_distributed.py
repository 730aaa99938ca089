"""Exact resume with two processes (torchrun, gloo, FSDP2): resumed at iteration 2 of 10, the run
equals an uninterrupted one bit for bit (metrics and the final model and optimizer shards); a
refused run folder is refused on every rank."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from tests.test_checkpoint import EXACT_RESUME, assert_same_run
from tests.test_trainer_distributed import free_port

WORKER = Path(__file__).resolve().parent / "resume_worker.py"


def lora_weights(denoiser):
    """{module path + A/B: tensor} of a denoiser's LoRA weights, whatever the adapter's name."""
    return {re.sub(r"\.lora_([AB])\.[^.]+\.weight$", r".\1", n): p.detach()
            for n, p in denoiser.named_parameters() if "lora_" in n}


def test_two_processes_resume_exactly(tmp_path):
    overrides = [f"{s}.{k}={v}" for s, kv in EXACT_RESUME.items() for k, v in kv.items()]
    overrides += ["job.iterations=10", "checkpoint.every=2", "stop=2", "optim.ema_decay=0.9"]  # EMA shards too
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
        f"--rdzv-endpoint=localhost:{free_port()}", "--rdzv-backend=c10d", str(WORKER), str(tmp_path), *overrides,
    ]
    proc = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert_same_run(tmp_path / "full" / "run", tmp_path / "resumed" / "run", 10)
    shards = (tmp_path / "resumed" / "run" / "checkpoints" / "step-000010").glob("*.distcp")
    assert len(list(shards)) == 2
    # a refusal of the run folder reaches every rank (none is left waiting for rank 0)
    for rank in (0, 1):
        assert "in use by a live run" in (tmp_path / f"refused-rank{rank}.txt").read_text()

    # the 2-process checkpoint exports in one process; diffusers loads it at the trained scale
    from tests.trainer_setups import tiny_adapter, tiny_config
    from vgrpo.evaluate import load_trainable_weights
    from vgrpo.export import export
    from vgrpo.trainer.parallelize import apply_finetune_mode

    cfg, run = tiny_config(tmp_path), tmp_path / "resumed" / "run"
    reference = tiny_adapter(cfg, torch.device("cpu")).denoiser
    apply_finetune_mode(reference, cfg.finetune)
    load_trainable_weights(reference, run / "checkpoints" / "step-000010")
    for ema in (False, True):
        loaded = tiny_adapter(cfg, torch.device("cpu")).denoiser
        out = export(run, tmp_path / f"export-{ema}", "lora", ema=ema)
        loaded.load_lora_adapter(str(out), weight_name="pytorch_lora_weights.safetensors")
        assert loaded.transformer_blocks[0].attn.to_q.scaling == {"default_0": cfg.finetune.lora_alpha / cfg.finetune.lora_rank}
        got, want = lora_weights(loaded), lora_weights(reference)
        assert got.keys() == want.keys() and len(got) > 0
        assert all(torch.equal(got[k], want[k]) for k in got) == (not ema)  # the EMA is another average
