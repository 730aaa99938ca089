"""Seeds -> one number or one curve per configuration, and the target check.

- `Stat`: mean and sample standard deviation over seeds (no std for a single seed);
- `mean_curve`: a configuration's score curve averaged over seeds point by point (every seed
  evaluates at the same iterations), with the min-max band and the mean cost so far;
- `first_reach`: where a piecewise-linear curve first reaches a score;
- `target_check`: the cost (wall-clock and NFE per image) at which V-GRPO's mean curve first
  reaches Flow-GRPO's final mean score, as fractions of what Flow-GRPO spent to end there.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from vgrpo.experiments.collect import RunResult
from vgrpo.experiments.plan import Variant


@dataclass(frozen=True)
class Stat:
    """Mean over seeds and sample standard deviation (None for one seed)."""

    mean: float
    std: float | None
    n: int

    def text(self, digits: int = 3) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def stat(values: list[float]) -> Stat:
    if not values:
        raise ValueError("stat() needs at least one value")
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class MeanCurve:
    """Per evaluation iteration: mean / min / max score over seeds, mean NFE per image and mean
    training seconds spent so far."""

    iterations: list[int]
    score_mean: list[float]
    score_min: list[float]
    score_max: list[float]
    nfe_mean: list[float]
    seconds_mean: list[float]


def mean_curve(runs: list[RunResult]) -> MeanCurve:
    """Average the curves of `runs` (one configuration, several seeds) point by point."""
    if not runs:
        raise ValueError("mean_curve() needs at least one run")
    iterations = [p.iteration for p in runs[0].curve.points]
    for r in runs[1:]:
        other = [p.iteration for p in r.curve.points]
        if other != iterations:
            raise ValueError(f"runs {runs[0].spec.name} and {r.spec.name} evaluate at different iterations "
                             f"({iterations} vs {other}); a mean curve needs the same evaluation points")
    columns = list(zip(*(r.curve.points for r in runs)))
    return MeanCurve(
        iterations=iterations,
        score_mean=[statistics.fmean(p.score for p in col) for col in columns],
        score_min=[min(p.score for p in col) for col in columns],
        score_max=[max(p.score for p in col) for col in columns],
        nfe_mean=[statistics.fmean(p.nfe_per_image for p in col) for col in columns],
        seconds_mean=[statistics.fmean(p.train_seconds for p in col) for col in columns],
    )


@dataclass(frozen=True)
class VariantSummary:
    """One configuration over its seeds: its rollout and held-out samplers, final held-out score
    and accuracy, gain over iteration 0, total NFE per image, total training seconds,
    and mean surrogate CVs (None without a surrogate)."""

    variant: Variant
    seeds: list[int]
    rollout_sampler: str
    eval_sampler: str
    final_score: Stat
    gain: Stat
    final_accuracy: Stat
    total_nfe: Stat
    train_seconds: Stat
    surrogate_cv: Stat | None
    surrogate_cv_within_group: Stat | None


def summarise_variant(variant: Variant, runs: list[RunResult]) -> VariantSummary:
    if not runs:
        raise ValueError(f"no finished run of {variant.key}")
    last = [r.curve.points[-1] for r in runs]

    def optional(values: list[float | None]) -> Stat | None:
        present = [v for v in values if v is not None]
        return stat(present) if present else None

    return VariantSummary(
        variant=variant,
        seeds=[r.spec.seed for r in runs],
        rollout_sampler=" / ".join(sorted({r.rollout_sampler for r in runs})),
        eval_sampler=" / ".join(sorted({r.eval_sampler for r in runs})),
        final_score=stat([p.score for p in last]),
        gain=stat([r.curve.points[-1].score - r.curve.points[0].score for r in runs]),
        final_accuracy=stat([p.accuracy for p in last]),
        total_nfe=stat([p.nfe_per_image for p in last]),
        train_seconds=stat([p.train_seconds for p in last]),
        surrogate_cv=optional([r.curve.surrogate_cv for r in runs]),
        surrogate_cv_within_group=optional([r.curve.surrogate_cv_within_group for r in runs]),
    )


def first_reach(xs: list[float], ys: list[float], target: float) -> float | None:
    """Smallest x where the polyline through (xs, ys) reaches `target` (linear interpolation
    between points); None if it never does. `xs` must not decrease."""
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"first_reach needs equally long, non-empty xs and ys, got {len(xs)} and {len(ys)}")
    if any(b < a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"first_reach needs non-decreasing xs, got {xs}")
    if ys[0] >= target:
        return xs[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y1 >= target:  # y0 < target <= y1, so y1 > y0
            return x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    return None


SCORE = "score"
GAIN = "gain over iteration 0"


@dataclass(frozen=True)
class TargetCheck:
    """Where `candidate` first reaches `reference`'s final mean `measure` (None = not reached), and
    the fractions of `reference`'s total wall-clock and NFE that took. `measure` is the held-out
    score itself or its gain over the curve's own iteration 0 (which discounts a difference in
    the starting point, e.g. held-out evaluation with different samplers)."""

    measure: str
    candidate: str
    reference: str
    target_score: float
    reference_iterations: int
    reference_seconds: float
    reference_nfe: float
    reach_iteration: float | None
    reach_seconds: float | None
    reach_nfe: float | None

    @property
    def reached(self) -> bool:
        return self.reach_seconds is not None

    @property
    def seconds_fraction(self) -> float | None:
        return None if self.reach_seconds is None else _ratio(self.reach_seconds, self.reference_seconds)

    @property
    def nfe_fraction(self) -> float | None:
        return None if self.reach_nfe is None else _ratio(self.reach_nfe, self.reference_nfe)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def target_check(
    candidate: MeanCurve, reference: MeanCurve, candidate_label: str, reference_label: str, measure: str = SCORE
) -> TargetCheck:
    """The cost at which `candidate` first reaches `reference`'s final mean `measure` (SCORE or GAIN)."""
    if measure not in (SCORE, GAIN):
        raise ValueError(f"measure must be {SCORE!r} or {GAIN!r}, got {measure!r}")
    ys = candidate.score_mean
    target = reference.score_mean[-1]
    if measure == GAIN:
        ys = [y - candidate.score_mean[0] for y in ys]
        target -= reference.score_mean[0]
    return TargetCheck(
        measure=measure,
        candidate=candidate_label,
        reference=reference_label,
        target_score=target,
        reference_iterations=reference.iterations[-1],
        reference_seconds=reference.seconds_mean[-1],
        reference_nfe=reference.nfe_mean[-1],
        reach_iteration=first_reach([float(i) for i in candidate.iterations], ys, target),
        reach_seconds=first_reach(candidate.seconds_mean, ys, target),
        reach_nfe=first_reach(candidate.nfe_mean, ys, target),
    )
