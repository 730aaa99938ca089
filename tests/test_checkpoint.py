"""Checkpoints: a resumed run equals an uninterrupted one; saves are atomic; keep-last-k."""

from __future__ import annotations

import json

import torch

from tests.trainer_setups import run, tiny_config
from vgrpo.trainer.checkpoint import Checkpointer
from vgrpo.trainer.distributed import World
from vgrpo.trainer.metrics import read_metrics

KEYS = ("reward_mean", "reward_std", "policy_loss", "surrogate_mean", "ratio_min", "ratio_max", "grad_norm")


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    common = dict(algorithm=dict(minibatches=2, mu=1), checkpoint=dict(every=1, keep_last=2))
    full = run(tiny_config(tmp_path / "a", job=dict(iterations=3), **common))
    # "interrupted" after iteration 2 (its checkpoint is the last thing it wrote) ...
    run(tiny_config(tmp_path / "b", job=dict(iterations=2), **common))
    # ... then the same command resumes from the run folder and finishes.
    resumed = run(tiny_config(tmp_path / "b", job=dict(iterations=3), **common))

    a = read_metrics(full.run_dir / "metrics.jsonl", "train")
    b = read_metrics(resumed.run_dir / "metrics.jsonl", "train")
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b):
        for k in KEYS:
            assert ra[k] == rb[k], (ra["iteration"], k, ra[k], rb[k])
    assert ra["optimizer_steps"] == rb["optimizer_steps"] == 3 * 2
    assert a[-1]["ratio_max"] > 1.0 or a[-1]["ratio_min"] < 1.0  # the second minibatch is off-policy
    for pa, pb in zip(full.params, resumed.params):
        assert torch.equal(pa, pb)
    ck = resumed.checkpointer
    assert [p.name for p in ck.complete()] == ["step-000002", "step-000003"]  # keep_last=2
    assert {p.name for p in ck.latest().iterdir()} >= {
        "trainer_state.json", "config.json", "fingerprint.json", "manifest.json", ".metadata", "rng-rank0.safetensors"}
    state = json.loads((ck.latest() / "trainer_state.json").read_text())
    assert state["iteration"] == 3 and state["step"] == 6

    # Loading restores the parameters bit for bit.
    saved = [p.detach().clone() for p in resumed.params]
    with torch.no_grad():
        for p in resumed.params:
            p.add_(1.0)
    state = Checkpointer(ck.folder, World(0, 1, torch.device("cpu"))).load(
        ck.latest(), resumed.adapter.denoiser, resumed.optimizer
    )
    assert state["iteration"] == 3
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
