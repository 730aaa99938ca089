"""Fault injection: a run SIGKILLed at seeded random points (during an iteration, a checkpoint save,
keep-last-k's deletion, the metrics truncation on resume) and restarted each time loses no metrics
of a finished iteration and ends in the uninterrupted run's state, bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_checkpoint import assert_same_run, distcp_digests
from vgrpo.trainer.checkpoint import problem
from vgrpo.trainer.metrics import read_metrics

WORKER = Path(__file__).resolve().parent / "fault_worker.py"
ITERATIONS = 8
OVERRIDES = [
    f"job.iterations={ITERATIONS}", "checkpoint.every=2", "checkpoint.keep_last=1",
    "rollout.group_size=2", "algorithm.mu=1",
]


def launch(root: Path, point: str = "none", n: int = 0) -> int:
    """Run the worker to its end or its kill; returns its exit status (-SIGKILL when killed)."""
    cmd = [sys.executable, str(WORKER), str(root), point, str(n), *OVERRIDES]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr[-4000:]
    return proc.returncode


def newest_good_iteration(run_dir: Path) -> int:
    done = [p for p in (run_dir / "checkpoints").glob("step-*") if problem(p) is None]
    return max((int(p.name[5:]) for p in done), default=0)


def check_metrics(run_dir: Path, reference: list[dict]) -> list[int]:
    """Every train record present equals the uninterrupted run's; none of a checkpointed iteration is missing."""
    rows = read_metrics(run_dir / "metrics.jsonl", "train")
    iterations = [r["iteration"] for r in rows]
    assert iterations == list(range(len(rows))), iterations
    assert len(rows) >= newest_good_iteration(run_dir), (iterations, newest_good_iteration(run_dir))
    for row in rows:
        want = reference[row["iteration"]]
        assert {k: v for k, v in row.items() if not k.startswith("time_") and not k.endswith("_per_s")} == {
            k: v for k, v in want.items() if not k.startswith("time_") and not k.endswith("_per_s")}
    return iterations


@pytest.mark.parametrize("seed", [0])
def test_killed_and_restarted_run_ends_as_the_uninterrupted_one(tmp_path, seed):
    rng = random.Random(seed)
    assert launch(tmp_path / "reference") == 0
    reference = read_metrics(tmp_path / "reference" / "run" / "metrics.jsonl", "train")
    run_dir = tmp_path / "faulty" / "run"

    # 1. killed inside iteration 3, 4 or 5 (checkpoints at 2 and 4; metrics of later iterations written)
    k = rng.choice([3, 4, 5])
    assert launch(tmp_path / "faulty", "iteration", k + 1) == -signal.SIGKILL
    assert check_metrics(run_dir, reference) == list(range(k))

    # 2. killed while the restart rewrites metrics.jsonl: the old file is whole
    before = (run_dir / "metrics.jsonl").read_bytes()
    assert launch(tmp_path / "faulty", "truncation", 1) == -signal.SIGKILL
    assert (run_dir / ".metrics.jsonl.tmp").is_file()  # the kill came while the new file was written
    assert (run_dir / "metrics.jsonl").read_bytes() == before

    # 3. killed while writing the first or second checkpoint of the next restart
    start = newest_good_iteration(run_dir)
    n = rng.choice([1, 2] if start + 4 <= ITERATIONS else [1])
    assert launch(tmp_path / "faulty", "save", n) == -signal.SIGKILL
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".tmp-")] == [
        f".tmp-step-{start + 2 * n:06d}"]
    check_metrics(run_dir, reference)
    assert newest_good_iteration(run_dir) == start + 2 * (n - 1)

    # 4. killed half-way through deleting the checkpoint it resumed from, once the next one is saved
    start = newest_good_iteration(run_dir)
    assert launch(tmp_path / "faulty", "keep_last", 1) == -signal.SIGKILL
    check_metrics(run_dir, reference)
    assert newest_good_iteration(run_dir) == start + 2
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".trash-")]

    # 5. the plain restart finishes: the uninterrupted run's metrics and final state, no leftovers
    assert launch(tmp_path / "faulty") == 0
    assert check_metrics(run_dir, reference) == list(range(ITERATIONS))
    assert_same_run(tmp_path / "reference" / "run", run_dir, ITERATIONS)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step-{ITERATIONS:06d}"]
    assert distcp_digests(run_dir / "checkpoints" / f"step-{ITERATIONS:06d}")
    assert json.loads((run_dir / "checkpoints" / f"step-{ITERATIONS:06d}" / "trainer_state.json").read_text())[
        "iteration"] == ITERATIONS
