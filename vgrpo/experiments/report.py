"""The comparison's results as data: build them from the collected runs, write results.json and
results.csv (one row per run and evaluation point)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vgrpo.experiments.aggregate import (
    GAIN,
    SCORE,
    MeanCurve,
    TargetCheck,
    VariantSummary,
    mean_curve,
    summarise_variant,
    target_check,
)
from vgrpo.experiments.collect import RunResult
from vgrpo.experiments.plan import FLOWGRPO, VGRPO, Plan, Variant


@dataclass
class Report:
    """Everything the output files show. `main_curves` is keyed by variant key; `targets` holds the
    target checks on the score and on the gain (empty unless both V-GRPO and Flow-GRPO have
    finished runs); `missing` maps run name -> reason."""

    plan: Plan
    results: list[RunResult]
    missing: dict[str, str]
    main: list[VariantSummary]
    main_curves: dict[str, MeanCurve]
    ablations: list[VariantSummary]
    targets: list[TargetCheck]
    meta: dict[str, Any]


def _runs_of(results: list[RunResult], variant: Variant, seeds: tuple[int, ...]) -> list[RunResult]:
    return [r for r in results if r.spec.variant.key == variant.key and r.spec.seed in seeds]


def build_report(plan: Plan, results: list[RunResult], missing: dict[str, str], meta: dict[str, Any]) -> Report:
    """Summaries per configuration, mean curves of the main comparison and the target check."""
    main, curves = [], {}
    for variant in plan.main_variants:
        runs = _runs_of(results, variant, plan.seeds)
        if runs:
            main.append(summarise_variant(variant, runs))
            curves[variant.key] = mean_curve(runs)
    ablations = []
    for variant in plan.ablation_variants:
        runs = _runs_of(results, variant, plan.ablation_seeds)
        if runs:
            ablations.append(summarise_variant(variant, runs))
    targets = []
    if VGRPO.key in curves and FLOWGRPO.key in curves:
        targets = [target_check(curves[VGRPO.key], curves[FLOWGRPO.key], VGRPO.label, FLOWGRPO.label, measure)
                   for measure in (SCORE, GAIN)]
    return Report(plan, results, missing, main, curves, ablations, targets, meta)


# ----------------------------------------------------------------------------- results.json


def _json_safe(value: Any) -> Any:
    """Non-finite floats -> None (JSON has no NaN), tuples -> lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def report_dict(report: Report) -> dict[str, Any]:
    plan = report.plan
    targets = [{**dataclasses.asdict(t), "reached": t.reached, "seconds_fraction": t.seconds_fraction,
                "nfe_fraction": t.nfe_fraction} for t in report.targets]
    return {
        "budget": dataclasses.asdict(plan.budget),
        "seeds": list(plan.seeds),
        "ablation_seeds": list(plan.ablation_seeds),
        "extra_overrides": list(plan.extra_overrides),
        "meta": report.meta,
        "main": [dataclasses.asdict(s) for s in report.main],
        "target_checks": targets,
        "ablations": [dataclasses.asdict(s) for s in report.ablations],
        "main_curves": {key: dataclasses.asdict(c) for key, c in report.main_curves.items()},
        "runs": [
            {
                "name": r.spec.name, "variant": r.spec.variant.key, "label": r.spec.variant.label,
                "algorithm": r.spec.variant.algorithm, "seed": r.spec.seed, "argv": r.spec.argv(),
                "rollout_sampler": r.rollout_sampler, "eval_sampler": r.eval_sampler,
                "train_iterations": r.curve.train_iterations,
                "surrogate_cv": r.curve.surrogate_cv,
                "surrogate_cv_within_group": r.curve.surrogate_cv_within_group,
                "points": [dataclasses.asdict(p) for p in r.curve.points],
            }
            for r in report.results
        ],
        "missing_runs": report.missing,
    }


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(_json_safe(report_dict(report)), indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- results.csv

CSV_COLUMNS = (
    "run", "variant", "label", "algorithm", "seed", "iteration", "score_overall", "accuracy_overall",
    "cumulative_nfe_per_image", "cumulative_train_seconds", "surrogate_cv_mean", "surrogate_cv_within_group_mean",
)


def csv_rows(results: list[RunResult]) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names and one row per run and evaluation point (per-category columns last)."""
    categories: list[str] = []
    for r in results:
        for p in r.curve.points:
            categories.extend(c for c in p.category_scores if c not in categories)
    columns = [*CSV_COLUMNS, *(f"score_{c}" for c in categories), *(f"accuracy_{c}" for c in categories)]
    rows = []
    for r in results:
        for p in r.curve.points:
            row: dict[str, Any] = {
                "run": r.spec.name, "variant": r.spec.variant.key, "label": r.spec.variant.label,
                "algorithm": r.spec.variant.algorithm, "seed": r.spec.seed, "iteration": p.iteration,
                "score_overall": p.score, "accuracy_overall": p.accuracy,
                "cumulative_nfe_per_image": p.nfe_per_image, "cumulative_train_seconds": p.train_seconds,
                "surrogate_cv_mean": r.curve.surrogate_cv,
                "surrogate_cv_within_group_mean": r.curve.surrogate_cv_within_group,
            }
            row.update({f"score_{c}": v for c, v in p.category_scores.items()})
            row.update({f"accuracy_{c}": v for c, v in p.category_accuracy.items()})
            rows.append(row)
    return columns, rows


def write_csv(report: Report, path: Path) -> None:
    columns, rows = csv_rows(report.results)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
