"""Checkpoints: a resumed run equals an uninterrupted one; saves are atomic and checked; keep-last-k;
nothing loaded runs code; a checkpoint that fails its check is skipped for the one before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.trainer_setups import run, tiny_config
from vgrpo.trainer.checkpoint import Checkpointer, problem, write_manifest
from vgrpo.utils.distributed import World
from vgrpo.trainer.metrics import MetricsLogger, read_metrics
from vgrpo.trainer.run_folder import fingerprint

KEYS = ("reward_mean", "reward_std", "policy_loss", "surrogate_mean", "ratio_min", "ratio_max", "grad_norm")


EXACT_RESUME = dict(algorithm=dict(minibatches=2, mu=1), rollout=dict(prompts_per_iteration=4, group_size=2))
"""The smallest set-up that showed a resume drift (from iteration 5, prompt encodings batched)."""


def distcp_digests(checkpoint):
    """sha256 of the DCP shard files (model and optimizer state) from a checkpoint's manifest."""
    files = json.loads((checkpoint / "manifest.json").read_text())["files"]
    return {name: entry["sha256"] for name, entry in files.items() if name.endswith(".distcp")}


def assert_same_run(a_dir, b_dir, iterations):
    """Train metrics (all but timings) and the final checkpoint's shards are the same bits."""
    a = read_metrics(a_dir / "metrics.jsonl", "train")
    b = read_metrics(b_dir / "metrics.jsonl", "train")
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b] == list(range(iterations))
    for ra, rb in zip(a, b):
        for k in ra:
            if not k.startswith("time_") and not k.endswith("_per_s"):
                assert ra[k] == rb[k], (ra["iteration"], k, ra[k], rb[k])
    last = f"checkpoints/step-{iterations:06d}"
    assert distcp_digests(a_dir / last) == distcp_digests(b_dir / last) != {}


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    # 10 iterations, interrupted after iteration 2: the resumed run meets new prompts in other
    # batches than the uninterrupted one (its prompt cache starts empty) and must still be exact.
    common = dict(EXACT_RESUME, checkpoint=dict(every=2, keep_last=2))
    full = run(tiny_config(tmp_path / "a", job=dict(iterations=10), **common))
    # "interrupted" after iteration 2 (its checkpoint is the last thing it wrote) ...
    run(tiny_config(tmp_path / "b", job=dict(iterations=2), **common))
    # ... then the same command resumes from the run folder and finishes.
    resumed = run(tiny_config(tmp_path / "b", job=dict(iterations=10), **common))

    assert_same_run(full.run_dir, resumed.run_dir, 10)
    rows = read_metrics(full.run_dir / "metrics.jsonl", "train")
    assert rows[-1]["optimizer_steps"] == 10 * 2
    assert rows[-1]["ratio_max"] > 1.0 or rows[-1]["ratio_min"] < 1.0  # the second minibatch is off-policy
    for pa, pb in zip(full.params, resumed.params):
        assert torch.equal(pa, pb)
    ck = resumed.checkpointer
    assert [p.name for p in ck.complete()] == ["step-000008", "step-000010"]  # keep_last=2
    assert {p.name for p in ck.latest().iterdir()} >= {
        "trainer_state.json", "config.json", "fingerprint.json", "manifest.json", ".metadata", "rng-rank0.safetensors"}
    state = json.loads((ck.latest() / "trainer_state.json").read_text())
    assert state["iteration"] == 10 and state["step"] == 20

    # Loading restores the parameters bit for bit.
    saved = [p.detach().clone() for p in resumed.params]
    with torch.no_grad():
        for p in resumed.params:
            p.add_(1.0)
    state = Checkpointer(ck.folder, World(0, 1, torch.device("cpu"))).load(
        ck.latest(), resumed.adapter.denoiser, resumed.optimizer
    )
    assert state["iteration"] == 10
    for p, s in zip(resumed.params, saved):
        assert torch.equal(p, s)


def test_partial_checkpoint_is_ignored_and_cleaned(tmp_path):
    cfg = tiny_config(tmp_path, job=dict(iterations=1), checkpoint=dict(every=1))
    first = run(cfg)
    folder = first.checkpointer.folder
    # A crash in the middle of the next save leaves only a temporary folder.
    partial = folder / ".tmp-step-000002"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"truncated")
    assert first.checkpointer.latest().name == "step-000001"
    resumed = run(tiny_config(tmp_path, job=dict(iterations=2), checkpoint=dict(every=1)))
    assert not partial.exists()
    assert [p.name for p in resumed.checkpointer.complete()] == ["step-000001", "step-000002"]


def test_non_finite_parameters_are_never_saved(tmp_path):
    cfg = tiny_config(tmp_path, job=dict(iterations=1), checkpoint=dict(every=-1))
    trainer = run(cfg)
    with torch.no_grad():
        trainer.params[0].view(-1)[0] = float("nan")
    assert trainer.save_checkpoint() is None
    assert trainer.checkpointer.complete() == []


def test_resume_continues_the_cosine_schedule(tmp_path, monkeypatch):
    # The same command, killed after its iteration-2 checkpoint and run again, follows the
    # uninterrupted run's learning rates: the scheduler's step count is part of the checkpoint.
    from vgrpo.trainer.trainer import Trainer

    common = dict(
        job=dict(iterations=3), algorithm=dict(minibatches=2, mu=1),
        optim=dict(schedule="cosine", final_lr_ratio=0.0, warmup_steps=2), checkpoint=dict(every=1),
    )
    full = run(tiny_config(tmp_path / "a", **common))

    real_step = Trainer.train_step

    def crash_at_third_iteration(self, iteration):
        if iteration == 2:
            raise KeyboardInterrupt("killed")
        return real_step(self, iteration)

    monkeypatch.setattr(Trainer, "train_step", crash_at_third_iteration)
    try:
        run(tiny_config(tmp_path / "b", **common))
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(Trainer, "train_step", real_step)
    resumed = run(tiny_config(tmp_path / "b", **common))

    lr_a = [r["lr"] for r in read_metrics(full.run_dir / "metrics.jsonl", "train")]
    lr_b = [r["lr"] for r in read_metrics(resumed.run_dir / "metrics.jsonl", "train")]
    assert lr_a == lr_b and lr_a[0] > lr_a[1] > lr_a[2] == 0.0
    for pa, pb in zip(full.params, resumed.params):
        assert torch.equal(pa, pb)


# ----------------------------------------------------------------------------- checked checkpoints


class Payload:
    """Unpickling this creates the file `marker`: what a crafted torch.load'ed file could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_rng_state_roundtrips_and_a_pickle_never_runs(tmp_path):
    import random

    import numpy as np

    from vgrpo.trainer.checkpoint import load_rng_state, save_rng_state

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_rng_state(tmp_path / "rng.safetensors")
    expected = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    load_rng_state(tmp_path / "rng.safetensors")
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]

    crafted, marker = tmp_path / "rng-rank0.safetensors", tmp_path / "marker"
    torch.save(Payload(marker), crafted)  # a pickle under the expected name
    with pytest.raises(ValueError, match="rng-rank0.safetensors is not a valid RNG state file"):
        load_rng_state(crafted)
    assert not marker.exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-iteration run with checkpoints at 1 and 2 (trained once for the module)."""
    return run(tiny_config(tmp_path_factory.mktemp("finished"), checkpoint=dict(every=1, keep_last=2)))


def nan_checkpoint(finished, folder):
    """Overwrite checkpoint 2 in `folder` with a whole one (manifest and all) whose parameters hold a NaN."""
    param = finished.params[0]
    kept = param.detach().clone()
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    try:
        ck = Checkpointer(folder / "checkpoints", finished.checkpointer.world, keep_last=5)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("vgrpo.trainer.checkpoint.parameters_finite", lambda model: True)
            ck.save(2, finished.adapter.denoiser, finished.optimizer,
                    json.loads((folder / "checkpoints/step-000002/trainer_state.json").read_text()),
                    finished.cfg.to_dict(), fingerprint(finished.cfg.to_dict()))
    finally:
        with torch.no_grad():
            param.copy_(kept)


def edit_state(step, iteration, manifest):
    path = step / "trainer_state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "iteration": iteration}, indent=2) + "\n")
    if manifest:
        write_manifest(step)


CORRUPTIONS = {
    "truncated shard": (lambda f, s: (s / "__0_0.distcp").write_bytes((s / "__0_0.distcp").read_bytes()[:100]),
                        "__0_0.distcp has 100 bytes"),
    "no .metadata": (lambda f, s: (s / ".metadata").unlink(), ".metadata is missing"),
    "edited iteration": (lambda f, s: edit_state(s, 1, manifest=False), "trainer_state.json does not match"),
    "negative iteration": (lambda f, s: edit_state(s, -3, manifest=True), "iteration -3 and step 4"),
    "iteration not the folder's": (lambda f, s: edit_state(s, 1, manifest=True), "says iteration 1, the folder"),
    "crafted rng": (lambda f, s: torch.save(Payload(f / "marker"), s / "rng-rank0.safetensors"),
                    "rng-rank0.safetensors has"),
    "no manifest": (lambda f, s: (s / "manifest.json").unlink(), "no manifest.json"),
    "nan parameters": (None, "parameters are not finite"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_failing_checkpoint_is_skipped_for_the_one_before(finished, tmp_path, caplog, corruption):
    folder = tmp_path / "run"
    shutil.copytree(finished.run_dir, folder)
    step2 = folder / "checkpoints" / "step-000002"
    damage, reason = CORRUPTIONS[corruption]
    if damage is None:
        nan_checkpoint(finished, folder)
    else:
        damage(folder, step2)
    cfg = tiny_config(tmp_path, checkpoint=dict(every=1, keep_last=2))
    resumed = run(cfg)
    warnings = [r.getMessage() for r in caplog.records if "skipping checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and str(step2) in warnings[0] and reason in warnings[0], warnings
    assert not (folder / "marker").exists()
    # iteration 1 was redone from step-000001 and equals the uninterrupted run's, bit for bit
    a = read_metrics(finished.run_dir / "metrics.jsonl", "train")
    b = read_metrics(folder / "metrics.jsonl", "train")
    assert [r["iteration"] for r in b] == [0, 1]
    assert all(ra[k] == rb[k] for ra, rb in zip(a, b) for k in KEYS)
    for pa, pb in zip(finished.params, resumed.params):
        assert torch.equal(pa, pb)
    assert problem(step2) is None  # rewritten whole by the resumed run


def test_a_named_failing_checkpoint_or_none_passing_is_refused(finished, tmp_path):
    from tests.test_run_folder import refused

    folder = tmp_path / "run"
    shutil.copytree(finished.run_dir, folder)
    (folder / "checkpoints/step-000002/.metadata").unlink()
    refused(tiny_config(tmp_path, checkpoint=dict(resume=str(folder / "checkpoints/step-000002"))),
            "step-000002 cannot be resumed: .metadata is missing")
    edit_state(folder / "checkpoints/step-000001", 7, manifest=False)
    refused(tiny_config(tmp_path), "no checkpoint in .* passes its check")


def test_leftovers_of_an_interrupted_deletion_are_not_checkpoints_and_are_cleaned(finished, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(finished.run_dir, folder)
    ck = folder / "checkpoints"
    (ck / "step-000001").rename(ck / ".trash-step-000001")  # keep_last's rename happened, the removal did not
    (ck / ".trash-step-000001" / "__0_0.distcp").unlink()
    resumed = run(tiny_config(tmp_path, job=dict(iterations=3), checkpoint=dict(every=1, keep_last=2)))
    assert sorted(p.name for p in ck.iterdir()) == ["step-000002", "step-000003"]
    assert resumed.iteration == 3


def test_metrics_truncation_replaces_the_file_whole(tmp_path, monkeypatch):
    logger = MetricsLogger(tmp_path, enabled=True, tensorboard=False)
    for i in range(3):
        logger.log(i, "train", {"reward_mean": float(i)})
    before = logger.path.read_text()

    def killed(src, dst):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr("vgrpo.utils.atomic.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        logger.truncate_from(1)
    assert logger.path.read_text() == before
    monkeypatch.undo()
    logger.truncate_from(1)
    assert [r["iteration"] for r in read_metrics(logger.path)] == [0]
    # a line cut short by a kill while appending is left out, not fatal
    with logger.path.open("a") as f:
        f.write('{"iteration": 1, "kind": "tr')
    assert [r["iteration"] for r in read_metrics(logger.path)] == [0]
