"""A training run that SIGKILLs itself at a chosen point: `python tests/fault_worker.py ROOT POINT N k=v...`.

Runs `tiny_config(ROOT)` with the `section.key=value` overrides and kills its own process (SIGKILL,
nothing runs after it) at the N-th time it reaches POINT:
    none        never (the run finishes)
    iteration   an iteration's update, after its rollout and rewards
    save        a checkpoint's save, shards written, manifest half written
    keep_last   keep-last-k's deletion of an old checkpoint, after its rename and one removed file
    truncation  the rewrite of metrics.jsonl on resume, its new file half written
The points are reached by wrapping package functions here; the package itself has no fault hooks.
"""

import os
import signal
import sys
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_setups import run, tiny_config  # noqa: E402

from vgrpo.trainer import checkpoint, metrics  # noqa: E402
from vgrpo.trainer.config import apply_overrides  # noqa: E402
from vgrpo.trainer.trainer import Trainer  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str, n: int) -> None:
    """Wrap the function behind `point` so that its n-th call kills the process part-way."""
    calls = {"n": 0}

    def due() -> bool:
        calls["n"] += 1
        return calls["n"] == n

    if point == "iteration":
        update = Trainer._update

        def killing_update(self, *args, **kwargs):
            if due():
                die()
            return update(self, *args, **kwargs)

        Trainer._update = killing_update
    elif point == "save":
        write_manifest = checkpoint.write_manifest

        def killing_write_manifest(folder):
            if due():
                (folder / checkpoint.MANIFEST).write_text('{"files": {"__0_0.dis')
                die()
            write_manifest(folder)

        checkpoint.write_manifest = killing_write_manifest
    elif point == "keep_last":
        rmtree = checkpoint.shutil.rmtree

        def killing_rmtree(path, *args, **kwargs):
            path = Path(path)
            if path.name.startswith(".trash-") and path.exists() and due():
                min(p for p in path.rglob("*") if p.is_file()).unlink()
                die()
            return rmtree(path, *args, **kwargs)

        checkpoint.shutil.rmtree = killing_rmtree
    elif point == "truncation":
        write_atomically = metrics.write_atomically

        def killing_write_atomically(path, write):
            if due():
                tmp = path.with_name(f".{path.name}.tmp")
                write(tmp)
                tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 2])
                die()
            write_atomically(path, write)

        metrics.write_atomically = killing_write_atomically
    elif point != "none":
        raise SystemExit(f"unknown fault point {point!r}")


if __name__ == "__main__":
    root, point, n, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    install(point, n)
    run(apply_overrides(tiny_config(root), overrides))
