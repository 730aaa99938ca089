"""Train a plan's trainings one at a time, each as `python -m vgrpo.train`, skipping finished ones.

A training is finished when its folder holds summary.json (the trainer writes it last), so re-running
the same command resumes: finished trainings are skipped, an unfinished one continues from its newest
checkpoint (the trainer's `checkpoint.resume=auto`). A folder made with another config is refused
before anything trains. Each training runs in its own process (clean torch state; a crash does not
stop the others), with the environment of this one (set OMP_NUM_THREADS there to pin the threads).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from vgrpo.experiments.plan import PlanError, Training, flatten

MAY_DIFFER = ("job.output_dir", "logging.")  # keys that do not change what a training computes


def is_finished(out: Path, training: Training) -> bool:
    return (out / training.name / "summary.json").is_file()


def check_folders(out: Path, trainings: list[Training]) -> None:
    """Raise PlanError when a training's folder holds a run of another config (other budget, other keys)."""
    problems = []
    for t in trainings:
        path = out / t.name / "config.json"
        if not path.is_file():
            continue
        have, want = flatten(json.loads(path.read_text())), flatten(t.config)
        diffs = [f"{k}: folder has {have.get(k)!r}, plan wants {want.get(k)!r}" for k in sorted(set(have) | set(want))
                 if not k.startswith(MAY_DIFFER) and have.get(k) != want.get(k)]
        if diffs:
            problems.append(f"{out / t.name} was made with another config ({'; '.join(diffs[:4])}): "
                            "delete it or choose another --out")
    if problems:
        raise PlanError("existing run folders do not match the plan:\n  - " + "\n  - ".join(problems))


def command(training: Training) -> list[str]:
    return [sys.executable, "-m", "vgrpo.train", *training.argv]


def run_one(training: Training, log_path: Path) -> str:
    """Train in a child process, its output to `log_path`; "" on success, else why it failed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        log.write("$ " + " ".join(command(training)) + "\n")
        log.flush()
        code = subprocess.run(command(training), stdout=log, stderr=subprocess.STDOUT).returncode
    if code == 0:
        return ""
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    return f"exit status {code}; last lines of {log_path}:\n{tail}"


def run_all(out: Path, trainings: list[Training], echo: Callable[[str], None] = print) -> list[str]:
    """Train every unfinished training in order; returns the names of those that failed. The time left
    is estimated from the seconds per iteration measured so far in this invocation."""
    todo = [t for t in trainings if not is_finished(out, t)]
    iterations = {t.name: t.config["job"]["iterations"] for t in todo}
    failed, seconds, done = [], 0.0, 0
    for index, t in enumerate(trainings, 1):
        prefix = f"[{index}/{len(trainings)}] {t.name}"
        if t not in todo:
            echo(f"{prefix}: finished earlier, skipped")
            continue
        echo(f"{prefix}: training ...")
        start = time.perf_counter()
        failure = run_one(t, out / "logs" / f"{t.name}.log")
        if not failure and not is_finished(out, t):
            failure = f"the trainer exited without writing {out / t.name / 'summary.json'}"
        seconds += time.perf_counter() - start
        done += iterations.pop(t.name)
        left = seconds / done * sum(iterations.values())
        if failure:
            failed.append(t.name)
            echo(f"{prefix}: FAILED: {failure}")
        else:
            echo(f"{prefix}: done in {time.perf_counter() - start:.0f} s" +
                 (f"; about {left / 60:.1f} min left at this pace" if iterations else ""))
    return failed
