"""Run the planned training runs one after another, skipping those already finished.

A run is finished when its folder holds summary.json (the trainer writes it last), so an
interrupted comparison resumes where it stopped; an unfinished run resumes from its newest
checkpoint (the trainer's `checkpoint.resume=auto`). Each run normally gets its own Python process
(`python -m vgrpo.train`): without torchrun the trainer starts no process group, but a fresh
process also starts from clean torch state (threads, seeds, caches) and a crash cannot take the
comparison down. The in-process launcher calls `vgrpo.train.main` directly and saves the
interpreter start-up per run (tests, quick looks). Both give every run the same number of CPU
threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vgrpo.experiments.plan import RunSpec

LAUNCHERS = ("subprocess", "inprocess")
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: status "skipped" (finished earlier), "done" or "failed"."""

    name: str
    status: str
    seconds: float = 0.0
    message: str = ""


def is_finished(spec: RunSpec) -> bool:
    """A run is finished when the trainer has written its summary.json."""
    return (spec.run_dir / "summary.json").is_file()


def thread_environment(threads: int) -> dict[str, str]:
    """Environment that pins torch's and OpenMP's thread pools of a child process to `threads`."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(text[-lines:])


def launch_subprocess(spec: RunSpec, threads: int, log_path: Path) -> str:
    """Train `spec` in a child `python -m vgrpo.train`; returns "" on success, else why it failed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "vgrpo.train", *spec.argv()]
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=thread_environment(threads)).returncode
    if code != 0:
        return f"exit status {code}; last lines of {log_path}:\n{_tail(log_path)}"
    return ""


def launch_in_process(spec: RunSpec, threads: int, log_path: Path) -> str:
    """Train `spec` through `vgrpo.train.main` in this process; returns "" on success, else why not."""
    import torch

    from vgrpo.train import main

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        code = main(spec.argv())
    except Exception:  # noqa: BLE001 - one failed run must not stop the comparison
        return traceback.format_exc(limit=8)
    finally:
        torch.set_num_threads(previous)
    return "" if code == 0 else f"vgrpo.train.main returned {code}"


def run_all(
    specs: list[RunSpec],
    estimated_seconds: dict[str, float],
    *,
    threads: int,
    launcher: str = "subprocess",
    log_dir: Path,
    echo: Callable[[str], None] = print,
) -> list[RunOutcome]:
    """Run every unfinished spec in order; failures are reported and the next run starts.

    After each run the time left is re-estimated: the plan's estimate of the remaining runs, scaled
    by how the finished runs' measured time compared with their estimate.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    launch = launch_subprocess if launcher == "subprocess" else launch_in_process
    outcomes: list[RunOutcome] = []
    measured = estimated = 0.0
    pending = [s for s in specs if not is_finished(s)]
    for index, spec in enumerate(specs, 1):
        prefix = f"[{index}/{len(specs)}] {spec.name}"
        if spec not in pending:
            outcomes.append(RunOutcome(spec.name, "skipped", message="summary.json exists"))
            echo(f"{prefix}: finished earlier, skipped")
            continue
        echo(f"{prefix}: training (about {estimated_seconds[spec.name] / 60:.1f} min) ...")
        start = time.perf_counter()
        failure = launch(spec, threads, log_dir / f"{spec.name}.log")
        seconds = time.perf_counter() - start
        if not failure and not is_finished(spec):
            failure = f"the trainer exited without writing {spec.run_dir / 'summary.json'}"
        pending.remove(spec)
        measured += seconds
        estimated += estimated_seconds[spec.name]
        left = sum(estimated_seconds[s.name] for s in pending) * measured / max(estimated, 1e-9)
        if failure:
            outcomes.append(RunOutcome(spec.name, "failed", seconds, failure))
            echo(f"{prefix}: FAILED after {seconds:.0f} s: {failure}")
        else:
            outcomes.append(RunOutcome(spec.name, "done", seconds))
            echo(f"{prefix}: done in {seconds:.0f} s" + (f"; about {left / 60:.1f} min left" if pending else ""))
    return outcomes
