"""Exact resume with two processes (torchrun, gloo, FSDP2): resumed at iteration 2 of 10, the run
equals an uninterrupted one bit for bit (metrics and the final model and optimizer shards); a
refused run folder is refused on every rank."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_checkpoint import EXACT_RESUME, assert_same_run
from tests.test_trainer_distributed import free_port

WORKER = Path(__file__).resolve().parent / "resume_worker.py"


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
