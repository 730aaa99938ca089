"""One owner per run folder, and resumes that cannot silently change or lose a run.

- One writer: rank 0 holds an exclusive `flock` on `<run>/.lock` from the start to the end of the
  run. The kernel drops it when the process dies (SIGKILL included), so the next start takes over a
  killed run's folder, while a start in a folder whose run is alive is refused.
- Refused config changes: every checkpoint stores the fingerprint of the settings that shape the
  training trajectory (every config key except `RESUMABLE`). Resuming with other values is refused,
  naming each key with both values, unless the key is listed in `checkpoint.allow_changes` (the
  change is then recorded in metrics.jsonl).
- Checked checkpoints: the newest checkpoint that passes its manifest check is resumed; newer ones
  that fail are skipped with a warning naming them (all before the model loads).
- No lost runs: a fresh start (`checkpoint.resume=none`) in a folder that holds an earlier run is
  refused unless `job.overwrite=true`, which moves that run aside to `<name>.old-<n>`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import IO, Any, Callable

from vgrpo.trainer.checkpoint import Checkpointer, problem
from vgrpo.trainer.config import Config, ConfigError
from vgrpo.utils.distributed import World, all_gather_objects

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
FINGERPRINT = "fingerprint.json"
RESUMABLE = ("job.iterations", "job.name", "job.output_dir", "job.overwrite", "job.max_skipped_iterations",
             "parallel.timeout_s", "checkpoint.*", "eval.*", "logging.*")
"""Config keys that never refuse a resume: length, place, when to give up (skipped iterations, collective
timeout), checkpoint / evaluation / logging cadence."""


class RunFolderError(ConfigError):
    """The run folder cannot be used as asked: in use, an earlier run would be lost, or a resume
    would change the run's settings."""


# ----------------------------------------------------------------------------- fingerprint


def _resumable(key: str) -> bool:
    return any(key == r or (r.endswith(".*") and key.startswith(r[:-1])) for r in RESUMABLE)


def trajectory_settings(config: dict[str, Any]) -> dict[str, Any]:
    """{"section.key": value} of every setting of a `Config.to_dict()` outside `RESUMABLE`."""
    return {f"{s}.{k}": v for s, keys in config.items() for k, v in keys.items() if not _resumable(f"{s}.{k}")}


def fingerprint(config: dict[str, Any]) -> dict[str, Any]:
    """{"sha256": digest, "settings": trajectory_settings(config)}: stored with each checkpoint."""
    settings = trajectory_settings(config)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return {"sha256": digest, "settings": settings}


def differences(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, list[Any]]:
    """{key: [saved value, current value]} where they differ. A key the saved settings lack (added
    to the config since) counts as its default."""
    default = trajectory_settings(Config().to_dict())
    return {k: [saved.get(k, default.get(k)), v] for k, v in sorted(now.items()) if saved.get(k, default.get(k)) != v}


def saved_settings(checkpoint: Path) -> dict[str, Any]:
    """The trajectory settings a checkpoint was written with."""
    if (checkpoint / FINGERPRINT).is_file():
        return json.loads((checkpoint / FINGERPRINT).read_text())["settings"]
    return trajectory_settings(json.loads((checkpoint / "config.json").read_text()))


def check_changes(checkpoint: Path, cfg: Config) -> dict[str, list[Any]]:
    """The allowed differences between `cfg` and the checkpoint's settings; RunFolderError if any
    other setting differs (each named with both values)."""
    diff = differences(saved_settings(checkpoint), trajectory_settings(cfg.to_dict()))
    refused = {k: v for k, v in diff.items() if k not in cfg.checkpoint.allow_changes}
    if refused:
        lines = "\n".join(f"  {k}: {json.dumps(a)} in the checkpoint, {json.dumps(b)} now" for k, (a, b) in refused.items())
        raise RunFolderError(
            f"resuming {checkpoint} with other values of settings that change the training trajectory:\n{lines}\n"
            "Resume with the checkpoint's values, accept the change with "
            f"--checkpoint.allow_changes={','.join(refused)} (recorded in metrics.jsonl), or start a new run "
            "(another job.name, or --checkpoint.resume=none --job.overwrite=true)"
        )
    return diff


# ----------------------------------------------------------------------------- the lock


class RunLock:
    """An exclusive flock on `<folder>/.lock` naming its holder; released by `release` or process death."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_FILE
        self.file: IO[str] | None = None

    def acquire(self) -> RunLock:
        f = self.path.open("a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunFolderError(
                f"run folder {self.path.parent} is in use by a live run ({holder}); one folder has one "
                "writer: wait for that run to end or choose another job.name"
            ) from None
        f.seek(0)
        stale = f.read().strip()
        if stale:  # a clean release empties the file: its holder was killed
            log.warning("run folder %s: taking over from a run that ended without releasing it (%s)",
                        self.path.parent, stale)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self.file = f
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.truncate(0)
            self.file.flush()
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


# ----------------------------------------------------------------------------- claiming a folder


def on_main(world: World, fn: Callable[[], Any]) -> Any:
    """`fn()` run on rank 0; its result, or its error as a RunFolderError, on every rank (no rank
    is left waiting for one that failed)."""
    result, error = None, None
    if world.is_main:
        try:
            result = fn()
        except RunFolderError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"cannot use the run folder: {exc}"
        except Exception as exc:  # noqa: BLE001 - e.g. a malformed fingerprint.json
            error = f"checking the run folder failed: {type(exc).__name__}: {exc}"
    error, result = all_gather_objects((error, result))[0]
    if error is not None:
        raise RunFolderError(error)
    return result


def move_aside(run_dir: Path) -> Path:
    """Rename `run_dir` to the first free `<name>.old-<n>` beside it; returns the new path."""
    n = 1
    while (dest := run_dir.with_name(f"{run_dir.name}.old-{n}")).exists():
        n += 1
    run_dir.rename(dest)
    return dest


class RunFolder:
    """The claim of one run on its folder: the lock (rank 0) and the checkpoint to resume, if any."""

    def __init__(self, cfg: Config, world: World, checkpointer: Checkpointer):
        """Lock and check the folder before any model is loaded; RunFolderError on every rank if refused."""
        self.cfg, self.world, self.checkpointer = cfg, world, checkpointer
        self.lock: RunLock | None = None
        try:
            found = on_main(world, self._claim)
        except RunFolderError:
            self.release()
            raise
        self.resume_from: Path | None = Path(found) if found else None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _claim(self) -> str | None:
        cfg, run_dir = self.cfg, self.cfg.run_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock(run_dir).acquire()
        held = self._earlier_run()
        if cfg.checkpoint.resume == "none":
            if held and not cfg.job.overwrite:
                raise RunFolderError(
                    f"run folder {run_dir} holds an earlier run ({held}) and checkpoint.resume=none would start "
                    "over in it: resume it (checkpoint.resume=auto), choose another job.name, or pass "
                    "--job.overwrite=true to move it aside (it is kept as <name>.old-<n>)"
                )
            if held:
                moved = move_aside(run_dir)
                run_dir.mkdir()
                old, self.lock = self.lock, RunLock(run_dir).acquire()
                old.release()
                log.warning("moved the earlier run of %s aside to %s", run_dir, moved)
            return None
        if cfg.checkpoint.resume != "auto":
            return str(self.checked(Path(cfg.checkpoint.resume), fall_back=False))
        newest = self.older_than(None)
        if newest is None and held:
            self._no_checkpoint(run_dir, held)
        return None if newest is None else str(newest)

    def _earlier_run(self) -> str:
        """What of an earlier run the folder holds ("" if nothing)."""
        done = self.checkpointer.complete()
        if done:
            return f"{len(done)} checkpoint(s), the newest {done[-1].name}"
        metrics = self.cfg.run_dir() / "metrics.jsonl"
        return "metrics.jsonl" if metrics.is_file() and metrics.stat().st_size > 0 else ""

    def _no_checkpoint(self, run_dir: Path, held: str) -> None:
        """A folder with metrics but no checkpoint is started afresh, unless its settings differ
        (then its run is someone else's) or its checkpoints all failed their check."""
        if self.checkpointer.complete():
            raise RunFolderError(
                f"no checkpoint in {self.checkpointer.folder} passes its check (see the warnings above); "
                "name a checkpoint with --checkpoint.resume=PATH, or start over with "
                "--checkpoint.resume=none --job.overwrite=true (the run is moved aside, not deleted)"
            )
        try:
            saved = trajectory_settings(json.loads((run_dir / "config.json").read_text()))
        except (OSError, ValueError, AttributeError):
            return
        diff = differences(saved, trajectory_settings(self.cfg.to_dict()))
        if diff:
            keys = ", ".join(f"{k} ({json.dumps(a)} there, {json.dumps(b)} now)" for k, (a, b) in diff.items())
            raise RunFolderError(
                f"run folder {run_dir} holds a run without checkpoints ({held}) made with other settings: "
                f"{keys}; choose another job.name or pass --checkpoint.resume=none --job.overwrite=true"
            )

    def checked(self, path: Path, *, fall_back: bool) -> Path | None:
        """`path` if it passes its manifest check and its settings match the config (else
        RunFolderError); a failing check is a warning and None when `fall_back`, an error otherwise."""
        why = problem(path)
        if why is None:
            check_changes(path, self.cfg)
            return path
        if not fall_back:
            raise RunFolderError(f"checkpoint {path} cannot be resumed: {why}")
        log.warning("skipping checkpoint %s: %s", path, why)
        return None

    def older_than(self, path: Path | None) -> Path | None:
        """The newest checked checkpoint of the folder older than `path` (None: the newest of all)."""
        done = self.checkpointer.complete()
        if path is not None:
            done = done[: done.index(path)] if path in done else []
        for p in reversed(done):
            if self.checked(p, fall_back=True) is not None:
                return p
        return None

    def fallback(self, path: Path) -> Path | None:
        """After `path` failed to load: the checkpoint to try next (all ranks; None if there is none)."""
        if self.cfg.checkpoint.resume != "auto":
            return None

        def find() -> str | None:
            older = self.older_than(path)
            return None if older is None else str(older)

        found = on_main(self.world, find)
        return Path(found) if found else None

    def allowed_changes(self, path: Path) -> dict[str, list[Any]]:
        """The settings that differ from checkpoint `path`'s (all allowed, or the claim had refused)."""
        return differences(saved_settings(path), trajectory_settings(self.cfg.to_dict()))
