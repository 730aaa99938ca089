"""A run folder has one owner and keeps its run: the lock, refused config changes, allow_changes,
fresh starts that never delete an earlier run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.trainer_setups import color_rewards, run, tiny_adapter, tiny_config
from vgrpo.trainer.config import Config, ConfigError, validate
from vgrpo.trainer.metrics import read_metrics
from vgrpo.trainer.run_folder import LOCK_FILE, RESUMABLE, RunFolderError, RunLock, fingerprint

CKPT = dict(checkpoint=dict(every=1, keep_last=2))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-iteration run with checkpoints at 1 and 2 (trained once for the module)."""
    return run(tiny_config(tmp_path_factory.mktemp("finished"), **CKPT))


def copy_of(finished, root):
    """A copy of the finished run's folder as `root/run`; returns that folder."""
    shutil.copytree(finished.run_dir, root / "run")
    return root / "run"


def refused(cfg, match):
    """Constructing the Trainer for `cfg` raises RunFolderError matching `match`, before any model is built."""
    from vgrpo.trainer.trainer import Trainer

    built = []

    def factory(c, device):
        built.append(c)
        return tiny_adapter(c, device)

    with pytest.raises(RunFolderError, match=match) as info:
        Trainer(cfg, adapter_factory=factory, reward_factory=color_rewards)
    assert built == []
    return str(info.value)


def holder_script(folder, ready):
    """Python source of a process that takes the folder's lock as a run does (flock, its pid inside), says so, and sleeps."""
    return textwrap.dedent(f"""
        import fcntl, os, pathlib, time
        f = open(pathlib.Path({str(folder)!r}) / {LOCK_FILE!r}, "a+")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.write(f"pid {{os.getpid()}}\\n")
        f.flush()
        pathlib.Path({str(ready)!r}).write_text("locked")
        time.sleep(600)
    """)


def start_holder(tmp_path, folder):
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", holder_script(folder, ready)])
    for _ in range(600):
        if ready.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert ready.exists(), "the lock holder did not start"
    return proc


def test_a_live_run_owns_its_folder_and_a_killed_one_releases_it(tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    proc = start_holder(tmp_path, folder)
    try:
        message = refused(tiny_config(tmp_path), "in use by a live run")
        assert f"pid {proc.pid}" in message
        assert not (folder / "config.json").exists()  # the refused run wrote nothing
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # SIGKILL released the lock: the next run takes the folder over and says so
    trainer = run(tiny_config(tmp_path, job=dict(iterations=1)))
    assert trainer.iteration == 1
    assert any("ended without releasing" in r.getMessage() and str(proc.pid) in r.getMessage() for r in caplog.records)
    # a finished run releases its lock cleanly (an empty lock file, free to take)
    assert (folder / LOCK_FILE).read_text() == ""
    RunLock(folder).acquire().release()


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("optim", "lr", 0.05),
        ("job", "seed", 1),
        ("algorithm", "name", "flowgrpo"),
        ("finetune", "lora_targets", ["to_q"]),
        ("finetune", "lora_rank", 4),
        ("finetune", "mode", "full"),
    ],
)
def test_resuming_with_other_trajectory_settings_is_refused(finished, tmp_path, section, key, value):
    folder = copy_of(finished, tmp_path)
    saved = (folder / "config.json").read_text()
    old = getattr(getattr(finished.cfg, section), key)
    sections = {"job": {"iterations": 3}, **CKPT}
    sections[section] = {**sections.get(section, {}), key: value}
    cfg = tiny_config(tmp_path, **sections)
    message = refused(cfg, f"{section}.{key}")
    # the key with both values, and the way out
    assert f"{section}.{key}: {json.dumps(old)} in the checkpoint, {json.dumps(value)} now" in message
    assert f"--checkpoint.allow_changes={section}.{key}" in message
    assert (folder / "config.json").read_text() == saved  # the folder's config is untouched


def test_allowed_change_is_applied_and_recorded(finished, tmp_path):
    copy_of(finished, tmp_path)
    # iterations, evaluation, logging and checkpoint cadence may always change ...
    cfg = tiny_config(
        tmp_path, job=dict(iterations=3), optim=dict(lr=2e-3), eval=dict(every=0, images_per_category=1),
        logging=dict(progress=False), checkpoint=dict(every=2, keep_last=3, allow_changes=["optim.lr"]),
    )
    # ... and the learning rate, because it is listed
    resumed = run(cfg)
    rows = read_metrics(resumed.run_dir / "metrics.jsonl")
    change = [r for r in rows if r["kind"] == "config_change"]
    assert len(change) == 1 and change[0]["iteration"] == 2
    assert change[0]["changes"] == {"optim.lr": [1e-3, 2e-3]}
    assert change[0]["checkpoint"].endswith("step-000002")
    lrs = [r["lr"] for r in rows if r["kind"] == "train"]
    assert lrs == [1e-3, 1e-3, 2e-3]
    assert resumed.iteration == 3


def test_fresh_start_over_an_earlier_run_is_refused_unless_it_is_moved_aside(finished, tmp_path):
    metrics = (copy_of(finished, tmp_path) / "metrics.jsonl").read_text()
    refused(tiny_config(tmp_path, checkpoint=dict(resume="none")), "holds an earlier run .*step-000002")
    with pytest.raises(ConfigError, match="job.overwrite=true .* needs checkpoint.resume=none"):
        validate(tiny_config(tmp_path, job=dict(overwrite=True)))

    fresh = run(tiny_config(tmp_path, job=dict(iterations=1, overwrite=True), checkpoint=dict(resume="none", every=1)))
    moved = tmp_path / "run.old-1"
    assert (moved / "metrics.jsonl").read_text() == metrics  # the earlier run, whole
    assert [p.name for p in sorted((moved / "checkpoints").iterdir())] == ["step-000001", "step-000002"]
    assert [p.name for p in fresh.checkpointer.complete()] == ["step-000001"]
    assert [r["iteration"] for r in read_metrics(fresh.run_dir / "metrics.jsonl", "train")] == [0]


def test_a_folder_without_checkpoints_is_not_taken_by_other_settings(tmp_path):
    run(tiny_config(tmp_path, job=dict(iterations=1)))  # no checkpoints, only metrics
    refused(tiny_config(tmp_path, job=dict(iterations=1), optim=dict(lr=0.05)), "without checkpoints .*optim.lr")
    again = run(tiny_config(tmp_path, job=dict(iterations=1)))  # same settings: started afresh
    assert len(read_metrics(again.run_dir / "metrics.jsonl", "train")) == 1


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../escape", ""])
def test_job_name_is_one_path_component(tmp_path, name):
    with pytest.raises(ConfigError, match="job.name must be one folder name"):
        validate(tiny_config(tmp_path, job=dict(name=name)))


def test_allow_changes_names_config_keys(tmp_path):
    with pytest.raises(ConfigError, match="'optim.learning_rate' is not a config key"):
        validate(tiny_config(tmp_path, checkpoint=dict(allow_changes=["optim.lr", "optim.learning_rate"])))


def test_an_unusable_output_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from vgrpo.trainer.trainer import Trainer

    with pytest.raises(ConfigError, match="job.output_dir .* cannot be created: .* is not a folder"):
        Trainer(tiny_config(blocker), adapter_factory=lambda c, d: pytest.fail("model built"),
                reward_factory=color_rewards)


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_lock_refuses_a_second_holder_in_the_same_process(tmp_path):
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunFolderError, match="in use"):
        RunLock(tmp_path).acquire()
    first.release()
    RunLock(tmp_path).acquire().release()


def test_an_allowed_change_the_checkpoint_cannot_take_is_named(finished, tmp_path):
    copy_of(finished, tmp_path)
    cfg = tiny_config(tmp_path, job=dict(iterations=3), finetune=dict(lora_rank=4),
                      checkpoint=dict(every=1, allow_changes=["finetune.lora_rank"]))
    with pytest.raises(RuntimeError, match="step-000002 does not fit this model .*Size mismatch"):
        run(cfg)


def test_the_entry_point_reports_a_refusal_as_an_error(tmp_path, capsys):
    from vgrpo import train

    (tmp_path / "run").mkdir()
    lock = RunLock(tmp_path / "run").acquire()
    try:
        assert train.main([f"--job.output_dir={tmp_path}", "--job.name=run", "--job.device=cpu"]) == 2
    finally:
        lock.release()
    assert "error: run folder" in capsys.readouterr().err


def test_each_checkpoint_stores_the_fingerprint_of_the_trajectory_settings(finished):
    stored = json.loads((finished.checkpointer.latest() / "fingerprint.json").read_text())
    assert stored == fingerprint(finished.cfg.to_dict())
    assert stored["settings"]["optim.lr"] == 1e-3 and stored["settings"]["finetune.lora_rank"] == 16
    assert not any(k.startswith(("checkpoint.", "eval.", "logging.")) or k == "job.iterations" for k in stored["settings"])
    # every name that may change on resume is a config key or section
    config = Config().to_dict()
    for name in RESUMABLE:
        section, _, key = name.partition(".")
        assert section in config and (key == "*" or key in config[section]), name
