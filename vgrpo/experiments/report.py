"""The report of a plan, from its run folders' metrics.jsonl: report.md, results.json and score.png.

Each train record of metrics.jsonl holds the iteration's forwards per image (nfe_rollout + nfe_old +
nfe_update) and its training time (time_rollout_s + time_reward_s + time_update_s; evaluation is not
training cost); each eval record the evaluator's metrics, among them the plan's `metric`. The cost
of the evaluation after k iterations is the sum over train records 0..k-1. Per run the report gives
the mean and sample std over seeds of the first, the final and the best evaluation, and the total
cost; per group it marks the best run (highest mean final score). With a [compare] section it
measures where the candidate's mean curve over seeds (linear between evaluations) first reaches
the final mean score of the reference group's best run (and the same for the gain over iteration
0), in training wall-clock and NFE, as fractions of what that run spent. A missing key is an error
naming the file and the key, never a zero.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from vgrpo.experiments.plan import Plan, Training
from vgrpo.trainer.metrics import read_metrics

NFE_KEYS = ("nfe_rollout", "nfe_old", "nfe_update")
TIME_KEYS = ("time_rollout_s", "time_reward_s", "time_update_s")


class ReportError(ValueError):
    """metrics.jsonl that cannot support the report; the message names the file, record and key."""


@dataclass
class Curve:
    """Evaluations of one training (or the mean over seeds): iteration, score, and the cumulative
    NFE per image and training seconds spent before it."""

    iterations: list[int]
    scores: list[float]
    nfe: list[float]
    seconds: list[float]


def _number(record: dict, key: str, where: str) -> float:
    if key not in record:
        raise ReportError(f"{where} has no {key!r} (it has {', '.join(sorted(record))})")
    return float(record[key])  # non-finite values are logged as the strings "nan" / "inf"


def read_curve(path: Path, metric: str) -> Curve:
    """The evaluation curve of one metrics.jsonl."""
    records = read_metrics(path)
    train = sorted((r for r in records if r["kind"] == "train"), key=lambda r: r["iteration"])
    if [r["iteration"] for r in train] != list(range(len(train))):
        raise ReportError(f"{path}: train records are not iterations 0..{len(train) - 1} once each")
    nfe, seconds = [0.0], [0.0]
    for r in train:
        where = f"{path}, train record of iteration {r['iteration']}"
        nfe.append(nfe[-1] + sum(_number(r, k, where) for k in NFE_KEYS))
        seconds.append(seconds[-1] + sum(_number(r, k, where) for k in TIME_KEYS))
    evals = sorted((r for r in records if r["kind"] == "eval"), key=lambda r: r["iteration"])
    if not evals or evals[-1]["iteration"] > len(train):
        raise ReportError(f"{path}: no evaluation, or one after the last train record")
    ks = [r["iteration"] for r in evals]
    scores = [_number(r, metric, f"{path}, eval record of iteration {r['iteration']}") for r in evals]
    return Curve(ks, scores, [nfe[k] for k in ks], [seconds[k] for k in ks])


def mean_curve(curves: list[Curve]) -> Curve:
    """Point by point mean over seeds (which must evaluate at the same iterations)."""
    if any(c.iterations != curves[0].iterations for c in curves):
        raise ReportError(f"seeds evaluate at different iterations: {[c.iterations for c in curves]}")
    return Curve(curves[0].iterations, *([statistics.fmean(col) for col in zip(*(getattr(c, f) for c in curves))]
                                         for f in ("scores", "nfe", "seconds")))


@dataclass(frozen=True)
class Stat:
    """Mean and sample std over seeds (None for one seed)."""

    mean: float
    std: float | None

    def __str__(self) -> str:
        return f"{self.mean:.3f}" + ("" if self.std is None else f" ± {self.std:.3f}")


def stat(values: list[float]) -> Stat:
    return Stat(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


@dataclass
class Row:
    """One run of the plan over its finished seeds."""

    group: str
    run: str
    change: str
    seeds: list[int]
    start: Stat
    final: Stat
    best: Stat
    nfe: Stat
    seconds: Stat
    best_of_group: bool = False


def first_reach(xs: list[float], ys: list[float], target: float) -> float | None:
    """Smallest x where the polyline through (xs, ys) reaches `target`; None if it never does."""
    if ys[0] >= target:
        return xs[0]
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:]):
        if y1 >= target:  # y0 < target <= y1
            return x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    return None


@dataclass
class Reach:
    """Where `candidate`'s mean curve first reaches `reference`'s final mean `measure` ("score", or
    "gain" over each curve's own iteration 0, which discounts a different start), and what
    `reference` spent in all."""

    measure: str
    candidate: str
    reference: str
    target: float
    reference_seconds: float
    reference_nfe: float
    iteration: float | None
    seconds: float | None
    nfe: float | None


def curves_by_run(plan: Plan, trainings: list[Training], out: Path) -> tuple[dict[str, dict[int, Curve]], list[str]]:
    """{run key: {seed: curve}} of the finished trainings, and the (run, seed) not finished."""
    where = {served: t for t in trainings for served in t.serves}
    curves: dict[str, dict[int, Curve]] = {r.key: {} for r in plan.runs}
    missing = []
    for run in plan.runs:
        for seed in plan.seeds:
            folder = out / where[(run.key, seed)].name
            if (folder / "summary.json").is_file():
                curves[run.key][seed] = read_curve(folder / "metrics.jsonl", plan.metric)
            else:
                missing.append(f"{run.key} seed {seed} ({folder} not finished)")
    return curves, missing


def rows(plan: Plan, curves: dict[str, dict[int, Curve]]) -> list[Row]:
    out = []
    for run in plan.runs:
        c = curves[run.key]
        if c:
            out.append(Row(run.group, run.name, run.change, sorted(c), stat([x.scores[0] for x in c.values()]),
                           stat([x.scores[-1] for x in c.values()]),
                           stat([max(x.scores) for x in c.values()]), stat([x.nfe[-1] for x in c.values()]),
                           stat([x.seconds[-1] for x in c.values()])))
    for group in dict.fromkeys(r.group for r in out):
        max((r for r in out if r.group == group), key=lambda r: r.final.mean).best_of_group = True
    return out


def reach(plan: Plan, table: list[Row], curves: dict[str, dict[int, Curve]]) -> list[Reach]:
    """The cost-to-reach checks (score and gain) of the plan's [compare] section, when both sides
    have finished runs."""
    best = [r for r in table if r.group == plan.reference and r.best_of_group]
    if not best or not curves.get(plan.candidate or ""):
        return []
    reference = f"{plan.reference}/{best[0].run}"
    ref, cand = mean_curve(list(curves[reference].values())), mean_curve(list(curves[plan.candidate].values()))
    out = []
    for measure, ys, target in (("score", cand.scores, ref.scores[-1]), (
            "gain", [y - cand.scores[0] for y in cand.scores], ref.scores[-1] - ref.scores[0])):
        out.append(Reach(measure, plan.candidate, reference, target, ref.seconds[-1], ref.nfe[-1],
                         *(first_reach(xs, ys, target) for xs in ([float(i) for i in cand.iterations], cand.seconds,
                                                                  cand.nfe))))
    return out


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole > 0 else "-"


def markdown(plan: Plan, table: list[Row], checks: list[Reach], missing: list[str]) -> str:
    lines = [f"# {plan.title}", "", f"Plan {plan.source}; held-out `{plan.metric}`, mean ± sample std over seeds; "
             "cost = NFE per image (model forwards of rollout, behaviour / reference scoring and update) and "
             "training wall-clock (rollout + reward + update, evaluation excluded), summed over the run. "
             "**Bold**: the best run of its group (highest mean final score).", "",
             "| group | run | overrides | seeds | start | final | best | NFE per image | training s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        name = f"**{r.run}**" if r.best_of_group else r.run
        lines.append(f"| {r.group} | {name} | {f'`{r.change}`' if r.change else '-'} | "
                     f"{', '.join(map(str, r.seeds))} | {r.start} | {r.final} | {r.best} | {r.nfe.mean:.0f} | "
                     f"{r.seconds.mean:.0f} |")
    if checks:
        c = checks[0]
        lines += ["", f"## Cost for {c.candidate} to reach {c.reference}'s final score", "",
                  f"Where {c.candidate}'s mean curve over seeds (linear between evaluations) first reaches the "
                  f"final mean of {c.reference} (the best run of its group), against all that run spent: "
                  f"{c.reference_seconds:.0f} s of training, {c.reference_nfe:.0f} NFE per image. The gain row "
                  "measures both from their own iteration 0.", "",
                  "| measure | target | at iteration | training s | share | NFE per image | share |",
                  "|---|---|---|---|---|---|---|"]
        for c in checks:
            lines.append(f"| {c.measure} | {c.target:.3f} | " + ("not reached | - | - | - | - |" if c.seconds is None
                         else f"{c.iteration:.1f} | {c.seconds:.0f} | {_share(c.seconds, c.reference_seconds)} | "
                         f"{c.nfe:.0f} | {_share(c.nfe, c.reference_nfe)} |"))
    if missing:
        lines += ["", "Not finished: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def plot(plan: Plan, curves: dict[str, dict[int, Curve]], path: Path) -> None:
    """Mean score over seeds against NFE and training wall-clock, with the min-max band: the
    candidate and the reference group's runs when the plan compares, otherwise every run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [r.key for r in plan.runs if curves[r.key] and (
        plan.candidate is None or r.key == plan.candidate or r.group == plan.reference)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=110, sharey=True)
    for key in keys:
        runs = list(curves[key].values())
        mean = mean_curve(runs)
        low = [min(s) for s in zip(*(c.scores for c in runs))]
        high = [max(s) for s in zip(*(c.scores for c in runs))]
        for ax, xs in zip(axes, (mean.nfe, mean.seconds)):
            (line,) = ax.plot(xs, mean.scores, "o-", label=f"{key} ({len(runs)} seeds)")
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    axes[0].set_xlabel("NFE per image (cumulative)")
    axes[1].set_xlabel("training wall-clock, s (evaluation excluded)")
    axes[0].set_ylabel(f"held-out {plan.metric}")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(plan: Plan, trainings: list[Training], out: Path) -> list[Path]:
    """report.md, results.json and score.png in `out`; [] when no training has finished."""
    curves, missing = curves_by_run(plan, trainings, out)
    table = rows(plan, curves)
    if not table:
        return []
    checks = reach(plan, table, curves)
    paths = [out / "report.md", out / "results.json", out / "score.png"]
    paths[0].write_text(markdown(plan, table, checks, missing))
    paths[1].write_text(json.dumps({"runs": [asdict(r) for r in table], "reach": [asdict(c) for c in checks],
                                    "missing": missing}, indent=1) + "\n")
    plot(plan, curves, paths[2])
    return paths
