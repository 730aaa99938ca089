"""Two processes under torchrun (gloo, FSDP2) agree with one process on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vgrpo.trainer.metrics import read_metrics

WORKER = Path(__file__).resolve().parent / "trainer_worker.py"
KEYS = ("reward_mean", "reward_std", "policy_loss", "surrogate_mean", "ratio_mean", "ratio_min", "ratio_max", "kl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, root: Path, overrides: list[str]) -> None:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--nnodes=1",
        f"--rdzv-endpoint=localhost:{free_port()}", "--rdzv-backend=c10d",
        str(WORKER), str(root), *overrides,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


def test_two_processes_match_one_process(tmp_path):
    overrides = [
        "rollout.prompts_per_iteration=4", "rollout.group_size=2", "algorithm.minibatches=2",
        "algorithm.mu=1", "algorithm.sharing=group", "job.iterations=2", "checkpoint.every=2",
        # the KL to the base model: the sharded denoiser runs with its LoRA adapters disabled
        "algorithm.beta=0.3", "algorithm.kl_target=reference",
    ]
    torchrun(1, tmp_path / "one", overrides)
    torchrun(2, tmp_path / "two", overrides)
    one = read_metrics(tmp_path / "one" / "run" / "metrics.jsonl", "train")
    two = read_metrics(tmp_path / "two" / "run" / "metrics.jsonl", "train")
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        assert a["ratio_first_absdev"] == b["ratio_first_absdev"] == 0.0
        assert a["optimizer_steps"] == b["optimizer_steps"]
        for k in KEYS:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (a["iteration"], k)
    # the update moved the policy in both runs, identically
    assert two[1]["surrogate_mean"] != two[0]["surrogate_mean"]
    assert two[1]["kl"] > 0.0
    # the sharded run wrote one DCP checkpoint with a shard file and an RNG state per rank
    ckpt = tmp_path / "two" / "run" / "checkpoints" / "step-000002"
    assert len(list(ckpt.glob("*.distcp"))) == 2
    assert {p.name for p in ckpt.glob("rng-rank*")} == {"rng-rank0.safetensors", "rng-rank1.safetensors"}
