"""A run's metrics.jsonl -> its held-out score curve with the cost spent to get there.

Each evaluation point carries the held-out score and accuracy (overall and per category), the
iterations trained so far, the model evaluations spent per image so far (sum of nfe_rollout +
nfe_old + nfe_update over the train records before it) and the training wall-clock so far (sum of
time_rollout_s + time_reward_s + time_update_s; evaluation time is not training cost). Train
record i is iteration i, and the evaluation logged at iteration k follows train records 0..k-1.
Missing keys are errors that name the file, the record and the key: a comparison that silently
counted a missing NFE as 0 would flatter whichever algorithm lacks it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgrpo.experiments.plan import Plan, RunSpec
from vgrpo.trainer.metrics import read_metrics

NFE_KEYS = ("nfe_rollout", "nfe_old", "nfe_update")
TRAIN_TIME_KEYS = ("time_rollout_s", "time_reward_s", "time_update_s")
CV_KEYS = ("surrogate_cv", "surrogate_cv_within_group")


class MetricsError(ValueError):
    """A metrics.jsonl that cannot support the comparison; the message names file, record and key."""


@dataclass
class EvalPoint:
    """The held-out evaluation after `iteration` training iterations, and what they cost."""

    iteration: int
    score: float
    accuracy: float
    nfe_per_image: float
    train_seconds: float
    category_scores: dict[str, float] = field(default_factory=dict)
    category_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass
class RunCurve:
    """All evaluation points of one run and its mean surrogate CVs (None when not logged, as for
    an MDP baseline that has no ELBO surrogate)."""

    points: list[EvalPoint]
    train_iterations: int
    surrogate_cv: float | None
    surrogate_cv_within_group: float | None


def _number(record: dict[str, Any], key: str, where: str) -> float:
    if key not in record:
        present = ", ".join(sorted(k for k in record if k not in ("iteration", "kind")))
        raise MetricsError(f"{where} has no {key!r} (it has: {present})")
    value = record[key]
    try:
        return float(value)  # non-finite values are logged as the strings "nan" / "inf"
    except (TypeError, ValueError):
        raise MetricsError(f"{where}: {key!r} is {value!r}, not a number") from None


def _nfe(record: dict[str, Any], where: str) -> float:
    missing = [k for k in NFE_KEYS if k not in record]
    if missing:
        raise MetricsError(
            f"{where} has no {', '.join(missing)}: the trainer must log model evaluations per image "
            f"({' + '.join(NFE_KEYS)}) in every train record for the NFE comparison; this run was made "
            "by a trainer that does not, so re-run it with one that does"
        )
    return sum(_number(record, k, where) for k in NFE_KEYS)


def _mean_of_finite(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None


def collect_run(metrics_path: str | Path) -> RunCurve:
    """Read one run's metrics.jsonl into a RunCurve (see the module docstring for the columns)."""
    path = Path(metrics_path)
    if not path.is_file():
        raise MetricsError(f"{path} does not exist: the run has not started or its folder was moved")
    records = read_metrics(path)
    train = sorted((r for r in records if r.get("kind") == "train"), key=lambda r: r["iteration"])
    evals = sorted((r for r in records if r.get("kind") == "eval"), key=lambda r: r["iteration"])
    iterations = [r["iteration"] for r in train]
    if iterations != list(range(len(train))):
        raise MetricsError(f"{path}: train records must be iterations 0..{len(train) - 1} once each, got {iterations}")
    if not evals:
        raise MetricsError(f"{path} holds no held-out evaluation (kind 'eval'); runs need eval.every >= 0")
    eval_iterations = [r["iteration"] for r in evals]
    if len(set(eval_iterations)) != len(eval_iterations):
        raise MetricsError(f"{path}: more than one eval record at an iteration: {eval_iterations}")

    nfe_total, seconds_total = [0.0], [0.0]  # cumulative sums before iteration i
    for r in train:
        where = f"{path}, train record of iteration {r['iteration']}"
        nfe_total.append(nfe_total[-1] + _nfe(r, where))
        seconds_total.append(seconds_total[-1] + sum(_number(r, k, where) for k in TRAIN_TIME_KEYS))

    points = []
    for r in evals:
        k = r["iteration"]
        where = f"{path}, eval record of iteration {k}"
        if k > len(train):
            raise MetricsError(f"{where} comes after {len(train)} train records: the log is incomplete")
        points.append(EvalPoint(
            iteration=k,
            score=_number(r, "score/overall", where),
            accuracy=_number(r, "accuracy/overall", where),
            nfe_per_image=nfe_total[k],
            train_seconds=seconds_total[k],
            category_scores={key[6:]: float(v) for key, v in r.items()
                             if key.startswith("score/") and key != "score/overall"},
            category_accuracy={key[9:]: float(v) for key, v in r.items()
                               if key.startswith("accuracy/") and key != "accuracy/overall"},
        ))
    cv = {key: _mean_of_finite([_number(r, key, f"{path}, iteration {r['iteration']}") for r in train if key in r])
          for key in CV_KEYS}
    return RunCurve(points, len(train), cv["surrogate_cv"], cv["surrogate_cv_within_group"])


@dataclass
class RunResult:
    """A finished run of the plan, its curve and the resolved config it ran with (config.json)."""

    spec: RunSpec
    curve: RunCurve
    config: dict[str, Any]

    @property
    def rollout_sampler(self) -> str:
        """How the run sampled its rollouts, e.g. "ODE dpm++2m, 8 steps" or "SDE, 10 steps"."""
        r = self.config["rollout"]
        kind = "SDE" if self.config["algorithm"]["name"] == "flowgrpo" else f"ODE {r['solver']}"
        return f"{kind}, {r['steps']} steps"

    @property
    def eval_sampler(self) -> str:
        """The held-out evaluation's ODE sampler, e.g. "dpm++2m, 8 steps" (eval.steps / eval.solver,
        empty or 0 meaning the rollout's, as the trainer resolves them)."""
        r, e = self.config["rollout"], self.config.get("eval", {})
        return f"{e.get('solver') or r['solver']}, {e.get('steps') or r['steps']} steps"


def collect_plan(plan: Plan) -> tuple[list[RunResult], dict[str, str]]:
    """Curves of the plan's finished runs, and {run name: why it is missing} for the others.

    A finished run whose metrics cannot support the comparison (a missing NFE key, a gap in the
    log) raises MetricsError: that is a fault to fix, not a run to leave out quietly.
    """
    results, missing = [], {}
    for spec in plan.runs():
        if not (spec.run_dir / "summary.json").is_file():
            missing[spec.name] = ("not started" if not spec.run_dir.exists()
                                  else "unfinished (no summary.json)")
            continue
        config_path = spec.run_dir / "config.json"
        if not config_path.is_file():
            raise MetricsError(f"{config_path} is missing: the finished run {spec.name} cannot say how it ran")
        config = json.loads(config_path.read_text())
        results.append(RunResult(spec, collect_run(spec.run_dir / "metrics.jsonl"), config))
    return results, missing
