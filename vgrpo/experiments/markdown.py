"""summary.md: the comparison's tables and the target check, for people."""

from __future__ import annotations

from pathlib import Path

from vgrpo.experiments.aggregate import GAIN, MeanCurve, Stat, TargetCheck, VariantSummary
from vgrpo.experiments.report import Report


def _stat(s: Stat | None, digits: int = 3) -> str:
    return "-" if s is None else s.text(digits)


def _seeds(s: VariantSummary) -> str:
    return ", ".join(str(k) for k in s.seeds)


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{100 * fraction:.0f}%"


def setup_lines(report: Report) -> list[str]:
    plan, b, meta = report.plan, report.plan.budget, report.meta
    eval_images = b.eval_images_per_category * meta.get("categories", 0)
    lines = [
        f"Budget of every run: {b.iterations} iterations of {b.prompts_per_iteration} prompts x {b.group_size} images; "
        f"held-out evaluation before training, every {b.eval_every} iterations and at the end on "
        f"{eval_images} images ({b.eval_images_per_category} per category). "
        f"Main seeds: {', '.join(map(str, plan.seeds))}; ablation seeds: {', '.join(map(str, plan.ablation_seeds))}.",
        f"Extra overrides on every run: {' '.join(plan.extra_overrides) if plan.extra_overrides else 'none'}.",
        (f"Machine: {meta.get('cpu_count')} CPU cores, {meta['threads']} threads per run, torch {meta.get('torch')}, "
         f"runs launched as {meta.get('launcher')}." if "threads" in meta else
         f"Machine: {meta.get('cpu_count')} CPU cores; how the runs were launched was not recorded (no launch.json)."),
        "",
        "Training wall-clock is the sum of rollout, reward and update time over the iterations (held-out "
        "evaluation excluded); NFE per image is the sum of model evaluations per image (rollout + behaviour "
        "policy + update) over the iterations. Values are mean ± sample std over seeds. Wall-clock also "
        "depends on whatever else the machine ran at the time; NFE does not.",
    ]
    return lines


def main_table(summaries: list[VariantSummary]) -> list[str]:
    lines = [
        "| configuration | seeds | rollouts | held-out sampler | final held-out score | gain over iteration 0 "
        "| final accuracy | NFE per image | training wall-clock (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(f"| {s.variant.label} | {_seeds(s)} | {s.rollout_sampler} | {s.eval_sampler} | "
                     f"{_stat(s.final_score)} | {_stat(s.gain)} | {_stat(s.final_accuracy)} | "
                     f"{_stat(s.total_nfe, 0)} | {_stat(s.train_seconds, 0)} |")
    return lines


def sampler_note(summaries: list[VariantSummary], curves: dict[str, MeanCurve]) -> list[str]:
    """A warning when the configurations' held-out evaluations use different samplers, with the
    resulting difference at iteration 0."""
    if len({s.eval_sampler for s in summaries}) <= 1:
        return []
    parts = [f"{s.variant.label} with {s.eval_sampler} (iteration 0: {curves[s.variant.key].score_mean[0]:.3f})"
             for s in summaries if s.variant.key in curves]
    return [
        "",
        f"Note: the held-out scores come from different samplers: {'; '.join(parts)}. The gain row below "
        "discounts that difference in starting point; `--set eval.steps=N eval.solver=NAME` evaluates every "
        "run with the same sampler.",
    ]


def target_lines(targets: list[TargetCheck]) -> list[str]:
    if not targets:
        return ["Needs finished runs of both V-GRPO and Flow-GRPO (run with --only main or all)."]
    t0 = targets[0]
    lines = [
        f"Where {t0.candidate}'s mean curve (over seeds, interpolated linearly between evaluation points) first "
        f"reaches {t0.reference}'s final mean value, and what it spent to get there as a fraction of what "
        f"{t0.reference} spent in all: {t0.reference_iterations} iterations, {t0.reference_seconds:.0f} s of "
        f"training, {t0.reference_nfe:.0f} NFE per image.",
        "",
        f"| measure | {t0.reference} final | {t0.candidate} reaches it at iteration | training wall-clock "
        "| fraction | NFE per image | fraction |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in targets:
        value = f"{t.target_score:+.3f}" if t.measure == GAIN else f"{t.target_score:.3f}"
        if not t.reached:
            lines.append(f"| {t.measure} | {value} | **not reached** | - | - | - | - |")
            continue
        at = f"{t.reach_iteration:.1f}" + (" (already at the start)" if t.reach_iteration == 0 else "")
        lines.append(f"| {t.measure} | {value} | {at} | {t.reach_seconds:.0f} s | "
                     f"**{_percent(t.seconds_fraction)}** | {t.reach_nfe:.0f} | **{_percent(t.nfe_fraction)}** |")
    return lines


def ablation_table(summaries: list[VariantSummary]) -> list[str]:
    lines = [
        "| configuration | change from V-GRPO | final held-out score | gain over iteration 0 | surrogate CV "
        "| within-group CV |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        change = "-" if not s.variant.overrides else f"`{s.variant.change}`"
        lines.append(f"| {s.variant.label} | {change} | {_stat(s.final_score)} | {_stat(s.gain)} | "
                     f"{_stat(s.surrogate_cv)} | {_stat(s.surrogate_cv_within_group)} |")
    return lines


def write_markdown(report: Report, path: Path, figures: list[Path]) -> None:
    """Write summary.md: setup, main table, target check, ablation table, figures, missing runs."""
    lines = ["# V-GRPO vs Flow-GRPO on the built-in shapes world", "", *setup_lines(report), ""]
    if report.plan.main_variants:
        lines += ["## Main comparison", "", *(main_table(report.main) if report.main else ["No finished run."])]
        lines += [*sampler_note(report.main, report.main_curves), ""]
        lines += ["## Target: cost to reach Flow-GRPO's final score", "", *target_lines(report.targets), ""]
    if report.plan.ablation_variants:
        lines += ["## Ablations (V-GRPO)", ""]
        lines += [*(ablation_table(report.ablations) if report.ablations else ["No finished run."]), ""]
        lines += ["Surrogate CV: coefficient of variation of the ELBO surrogate over the batch and within "
                  "prompt groups, mean over iterations (method.md section 3).", ""]
    if figures:
        lines += ["## Figures", "", *(f"![{p.stem}]({p.name})" for p in figures), ""]
    if report.missing:
        lines += ["## Runs left out", "", *(f"- {name}: {why}" for name, why in report.missing.items()), ""]
    path.write_text("\n".join(lines))
