"""Algorithms own their metrics: the trainer logs what an algorithm reports, reduced the way it
declares, and adds no ratio of its own. A toy algorithm without a ratio, registered in this test
alone, trains one iteration and logs its own keys and no ratio / clip keys."""

from __future__ import annotations

import math
from typing import Sequence

import pytest
import torch

from tests.trainer_setups import color_rewards, tiny_adapter, tiny_config
from vgrpo.algorithms import ALGORITHMS, VGRPO, Algorithm, ChunkLoss
from vgrpo.sampling.rollout import rollout as ode_rollout


class AdvantageWeightedRegression(Algorithm):
    """Advantage-weighted flow matching on the rollout's own samples: no behaviour policy, no ratio."""

    name = "awr"
    metric_reductions = {"awr_loss": "mean", "awr_error_max": "max", "awr_error_min": "min",
                         "awr_chunks": "mean"}

    def rollout(self, adapter, prompts: Sequence[str], prompt_indices, *, iteration, seed, rollout, on_chunk=None):
        r = rollout
        return ode_rollout(adapter, prompts, prompt_indices, iteration=iteration, seed=seed, group_size=r.group_size,
                           steps=r.steps, solver=r.solver, shift=r.shift, batch_size=r.batch_size, on_chunk=on_chunk)

    def prepare(self, adapter, batch, *, seed, iteration, chunks, reuse):
        return {"chunks": 0}

    def chunk_loss(self, adapter, batch, advantages, state, sl, *, take_old_from_self, epoch, minibatch):
        x0 = batch.x0[sl]
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(sl.start))
        t = torch.full((x0.shape[0],), 0.5)
        v = adapter.velocity(0.5 * x0 + 0.5 * eps, t, batch.cond.index(sl)).float()
        error = (v - (eps - x0)).square().flatten(1).mean(1)  # [m]
        loss = (advantages[sl] * error).mean()
        state["chunks"] += 1
        return ChunkLoss(loss, {"awr_loss": loss.detach(), "awr_error_max": error.detach().max(),
                                "awr_error_min": error.detach().min()})

    def iteration_metrics(self, batch, state):
        return {"awr_chunks": torch.tensor(float(state["chunks"]))}

    def nfe(self, rollout, mu, state):
        return {"nfe_rollout": float(rollout.steps), "nfe_old": 0.0, "nfe_update": float(mu)}


@pytest.fixture
def awr(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, AdvantageWeightedRegression.name, AdvantageWeightedRegression)
    return AdvantageWeightedRegression.name


def _train(tmp_path, name, **algorithm):
    from vgrpo.trainer.metrics import read_metrics
    from vgrpo.trainer.trainer import Trainer

    cfg = tiny_config(tmp_path, job={"iterations": 1}, algorithm={"name": name, "minibatches": 2, **algorithm})
    trainer = Trainer(cfg, adapter_factory=tiny_adapter, reward_factory=color_rewards)
    before = [p.detach().clone() for p in trainer.params]
    trainer.train()
    rows = read_metrics(trainer.run_dir / "metrics.jsonl", "train")
    return trainer, before, rows


def test_an_algorithm_without_a_ratio_logs_its_own_metrics_and_no_ratio(tmp_path, awr):
    trainer, before, rows = _train(tmp_path, awr)
    assert len(rows) == 1
    row = rows[0]
    assert row["skipped_iteration"] == 0.0 and row["optimizer_steps"] == 4  # mu 2 x 2 minibatches
    assert math.isfinite(row["awr_loss"]) and row["awr_error_max"] >= row["awr_error_min"] > 0
    assert row["awr_chunks"] == 4.0
    assert not set(row) & set(VGRPO.metric_reductions)  # no ratio, clip or surrogate metric
    assert not [k for k in row if k.startswith(("ratio", "log_ratio", "clip", "surrogate"))]
    assert trainer.algorithm.progress(row) == {}
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params)), "no parameter moved"


def test_an_undeclared_metric_is_refused_by_name(tmp_path, monkeypatch):
    class Undeclared(AdvantageWeightedRegression):
        name = "undeclared"
        metric_reductions = {"awr_loss": "mean"}

    monkeypatch.setitem(ALGORITHMS, Undeclared.name, Undeclared)
    undeclared = r"\['awr_chunks', 'awr_error_max', 'awr_error_min'\]"
    with pytest.raises(ValueError, match=f"'undeclared' reported metrics {undeclared} that its metric_reductions"):
        _train(tmp_path, Undeclared.name)


def test_an_unknown_reduction_is_refused_before_training(tmp_path, monkeypatch):
    class Median(AdvantageWeightedRegression):
        name = "median"
        metric_reductions = {**AdvantageWeightedRegression.metric_reductions, "awr_loss": "median"}

    monkeypatch.setitem(ALGORITHMS, Median.name, Median)
    with pytest.raises(ValueError, match="'median' declares metric 'awr_loss' with reduction 'median'"):
        _train(tmp_path, Median.name)


@pytest.mark.parametrize("name", ["vgrpo", "flowgrpo"])
def test_the_ratio_algorithms_keep_their_metric_names(tmp_path, name):
    trainer, _, rows = _train(tmp_path, name, **({"sde_train_steps": 0} if name == "flowgrpo" else {}))
    row = rows[0]
    ratio_keys = {"clip_fraction", "policy_loss", "log_ratio_std", "ratio_mean", "ratio_min", "ratio_max",
                  "ratio_first_absdev", "grad_norm", "skipped_steps"}
    surrogate_keys = {"surrogate_mean", "surrogate_cv", "surrogate_cv_within_group"}
    assert ratio_keys <= set(row)
    assert (surrogate_keys <= set(row)) == (name == "vgrpo") and (surrogate_keys & set(row)) == (
        surrogate_keys if name == "vgrpo" else set())
    assert row["ratio_min"] <= row["ratio_mean"] <= row["ratio_max"] and row["ratio_first_absdev"] == 0.0
    assert set(trainer.algorithm.progress(row)) == {"ratio", "clip"}


def test_reduce_metrics_is_the_plain_reduction_per_declared_kind():
    from vgrpo.trainer.metrics import reduce_metrics

    g = torch.Generator().manual_seed(0)
    chunks = {k: [torch.randn((), generator=g, dtype=torch.float64) * 1e3 for _ in range(5)]
              for k in ("b_mean", "a_max", "c_min")}
    out = reduce_metrics(chunks, {"b_mean": "mean", "a_max": "max", "c_min": "min"}, distributed=False)
    assert list(out) == ["b_mean", "a_max", "c_min"]  # means first, then extremes, by name
    assert out["b_mean"] == torch.stack([v.float() for v in chunks["b_mean"]]).mean().item()
    assert out["a_max"] == max(v.float().item() for v in chunks["a_max"])
    assert out["c_min"] == min(v.float().item() for v in chunks["c_min"])
    assert reduce_metrics({"m": [torch.tensor(2.0)]}, {"m": "mean"}, distributed=False) == {"m": 2.0}
