"""Two processes under torchrun (gloo, FSDP2) agree with one process on the same global batch; two
launchers joined by a c10d rendezvous (multi-node) agree with one; a stopped rank ends the run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vgrpo.trainer.metrics import read_metrics

WORKER = Path(__file__).resolve().parent / "trainer_worker.py"
KEYS = ("reward_mean", "reward_std", "policy_loss", "surrogate_mean", "ratio_mean", "ratio_min", "ratio_max", "kl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


OVERRIDES = [
    "rollout.prompts_per_iteration=4", "rollout.group_size=2", "algorithm.minibatches=2",
    "algorithm.mu=1", "algorithm.sharing=group", "job.iterations=2", "checkpoint.every=2",
    # the KL to the base model: the sharded denoiser runs with its LoRA adapters disabled
    "algorithm.beta=0.3", "algorithm.kl_target=reference",
]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def torchrun_command(nproc: int, root: Path, overrides: list[str], *, nnodes: int = 1, port: int | None = None):
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}",
        f"--rdzv-endpoint=127.0.0.1:{port or free_port()}", "--rdzv-backend=c10d",
        str(WORKER), str(root), *overrides,
    ]


def torchrun(nproc: int, root: Path, overrides: list[str]) -> None:
    proc = subprocess.run(torchrun_command(nproc, root, overrides), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """The run folder of OVERRIDES trained by 2 processes under one torchrun."""
    root = tmp_path_factory.mktemp("two")
    torchrun(2, root, OVERRIDES)
    return root / "run"


def test_two_processes_match_one_process(tmp_path, two_process_run):
    torchrun(1, tmp_path / "one", OVERRIDES)
    one = read_metrics(tmp_path / "one" / "run" / "metrics.jsonl", "train")
    two = read_metrics(two_process_run / "metrics.jsonl", "train")
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
    ckpt = two_process_run / "checkpoints" / "step-000002"
    assert len(list(ckpt.glob("*.distcp"))) == 2
    assert {p.name for p in ckpt.glob("rng-rank*")} == {"rng-rank0.safetensors", "rng-rank1.safetensors"}


def _launch(cmd: list[str], log: Path) -> subprocess.Popen:
    """Start a launcher in a session of its own, its output going to `log` (a pipe could fill up)."""
    with log.open("w") as out:
        return subprocess.Popen(cmd, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _collect(procs: list[subprocess.Popen], logs: list[Path], timeout: float) -> list[tuple[int, str]]:
    """(return code, output) of each launcher; any still running after `timeout` s is killed."""
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for proc in procs:
            _kill_run(proc)
    return [(proc.returncode, log.read_text()) for proc, log in zip(procs, logs)]


def _kill_run(proc: subprocess.Popen, workers: dict[int, int] | None = None) -> None:
    """SIGKILL a launcher still running and its workers (they live in sessions of their own)."""
    if proc.poll() is None:
        workers = {**_worker_pids(proc.pid), **(workers or {})}
    for pid in (workers or {}).values():
        with contextlib.suppress(OSError):
            if b"trainer_worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_two_launchers_joined_by_a_rendezvous_match_one_launcher(tmp_path, two_process_run):
    """Multi-node: two torchrun launchers (--nnodes=2, one process each) meet at a c10d rendezvous on
    127.0.0.1 and train exactly as the 2-process single-launcher run."""
    port = free_port()
    procs, logs = [], [tmp_path / f"node{i}.log" for i in range(2)]
    for log in logs:
        procs.append(_launch(torchrun_command(1, tmp_path, OVERRIDES, nnodes=2, port=port), log))
        time.sleep(1.0)  # the first launcher hosts the rendezvous store
    for code, text in _collect(procs, logs, timeout=600):
        assert code == 0, text[-6000:]
    nodes = read_metrics(tmp_path / "run" / "metrics.jsonl", "train")
    single = read_metrics(two_process_run / "metrics.jsonl", "train")
    assert len(nodes) == len(single) == 2
    for a, b in zip(single, nodes):
        compared = [k for k in a if not k.startswith("time_") and not k.endswith("_per_s")]
        assert len(compared) > 10
        assert {k: b[k] for k in compared} == {k: a[k] for k in compared}


def _worker_pids(launcher: int) -> dict[int, int]:
    """{RANK: pid} of the worker processes whose parent is `launcher`."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = next((int(v[5:]) for v in env if v.startswith(b"RANK=")), None)
        if ppid == launcher and rank is not None:
            ranks[rank] = int(entry.name)
    return ranks


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_a_stopped_rank_ends_the_run_with_an_error_within_the_timeout(tmp_path):
    """SIGSTOP rank 1 after the first iteration: rank 0's next collective fails after parallel.timeout_s,
    and the launcher ends the run (non-zero) after its own grace period for the stopped rank (30 s)."""
    timeout_s, launcher_grace = 10, 30
    overrides = [o for o in OVERRIDES if not o.startswith(("job.iterations", "checkpoint.every"))]
    cmd = torchrun_command(2, tmp_path, [*overrides, "job.iterations=100000", "checkpoint.every=-1",
                                         f"parallel.timeout_s={timeout_s}"])
    log = tmp_path / "launcher.log"
    proc = _launch(cmd, log)
    ranks: dict[int, int] = {}
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 300
        while not (metrics.exists() and metrics.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        ranks = _worker_pids(proc.pid)
        assert sorted(ranks) == [0, 1]
        os.kill(ranks[1], signal.SIGSTOP)
        stopped = time.monotonic()
        [(code, text)] = _collect([proc], [log], timeout=timeout_s + launcher_grace + 60)
        elapsed = time.monotonic() - stopped
    finally:
        _kill_run(proc, ranks)
    print(f"stopped rank: the run ended with status {code} {elapsed:.1f} s after SIGSTOP")
    assert code != 0
    assert elapsed < timeout_s + launcher_grace + 30, elapsed
    assert f"Timed out waiting {timeout_s * 1000}ms" in text, text[-4000:]  # gloo's error, on rank 0


def test_evaluation_split_over_two_processes_matches_one_process(tmp_path):
    """Three evaluation prompts x 1 image over two ranks (2 + 1, the short rank pads): the same
    per-reward means and the same sample grid as one process."""
    prompts = tmp_path / "eval.jsonl"
    prompts.write_text('{"prompt": "a red circle", "category": "a"}\n{"prompt": "a blue square", "category": "b"}\n'
                       '{"prompt": "two circles", "category": "a"}\n')
    overrides = ["job.iterations=1", "eval.every=0", f"eval.prompt_file={prompts}", "eval.grid_images=3",
                 "algorithm.minibatches=1", "rollout.prompts_per_iteration=2"]
    torchrun(1, tmp_path / "one", overrides)
    torchrun(2, tmp_path / "two", overrides)
    for name in ("iter-000000.json", "iter-000001.json"):
        one, two = (json.loads((tmp_path / n / "run" / "eval" / name).read_text()) for n in ("one", "two"))
        assert set(one) == set(two) >= {"reward/color_balance", "reward/color_balance/a", "reward/color_balance/b"}
        for k in one:
            if k != "time_eval_s":
                assert two[k] == pytest.approx(one[k], rel=1e-4, abs=1e-6), (name, k)
    assert (tmp_path / "two" / "run" / "samples" / "iter-000001.png").stat().st_size > 0
