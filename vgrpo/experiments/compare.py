"""V-GRPO against Flow-GRPO, and the paper's ablations, on the built-in shapes world.

    python -m vgrpo.experiments.compare [--out runs/compare] [--seeds 0 1 2] [--iterations 30]
        [--eval-every 10] [--only main|ablations|all] [--variants KEY ...] [--set section.key=value ...]
        [--threads N] [--launcher subprocess|inprocess] [--dry-run | --report-only]

Trains every planned run into `<out>/<variant>-seed<k>/` (finished runs are skipped, so an
interrupted comparison resumes), then writes into `<out>/`: results.json, results.csv (one row per
run and evaluation point), summary.md (tables and the target check) and PNG figures. The plan and
its estimated time are printed first; `--dry-run` stops there, `--report-only` skips training and
only re-collects and re-plots. Exit status: 0 = all runs finished and reported, 1 = a run failed
or the metrics cannot support the report, 2 = bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

from vgrpo.experiments.collect import MetricsError, collect_plan  # noqa: E402
from vgrpo.experiments.estimate import RunEstimate, estimate_run  # noqa: E402
from vgrpo.experiments.markdown import write_markdown  # noqa: E402
from vgrpo.experiments.plan import Budget, Plan, PlanError, build_plan  # noqa: E402
from vgrpo.experiments.plots import plot_ablations, plot_main_curves  # noqa: E402
from vgrpo.experiments.report import build_report, write_csv, write_json  # noqa: E402
from vgrpo.experiments.resolve import check_existing_runs, resolve_all  # noqa: E402
from vgrpo.experiments.runner import LAUNCHERS, is_finished, run_all  # noqa: E402

LAUNCH_FILE = "launch.json"


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = Budget()
    p = argparse.ArgumentParser(prog="python -m vgrpo.experiments.compare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/compare", help="comparison folder (default: runs/compare)")
    p.add_argument("--only", default="all", choices=("main", "ablations", "all"),
                   help="main = V-GRPO vs Flow-GRPO over --seeds; ablations = V-GRPO ablations over --ablation-seeds")
    p.add_argument("--variants", nargs="+", default=[], metavar="KEY",
                   help="only these configurations, by run-folder key (vgrpo, flowgrpo, no-sharing, nmc-2, ...)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds of the main comparison (default: 0 1 2)")
    p.add_argument("--ablation-seeds", type=int, nargs="+", default=[0], help="seeds of the ablations (default: 0)")
    p.add_argument("--iterations", type=int, default=d.iterations, help=f"iterations per run (default: {d.iterations})")
    p.add_argument("--prompts", type=int, default=d.prompts_per_iteration,
                   help=f"prompts per iteration (default: {d.prompts_per_iteration})")
    p.add_argument("--group-size", type=int, default=d.group_size, help=f"images per prompt (default: {d.group_size})")
    p.add_argument("--eval-every", type=int, default=d.eval_every,
                   help=f"held-out evaluation every this many iterations (default: {d.eval_every})")
    p.add_argument("--eval-images", type=int, default=d.eval_images_per_category,
                   help=f"held-out images per category (default: {d.eval_images_per_category})")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override applied to every run after the plan's own (e.g. rollout.steps=6)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="CPU threads of every run (default: all cores)")
    p.add_argument("--launcher", default="subprocess", choices=LAUNCHERS,
                   help="subprocess (default: one python -m vgrpo.train per run) or inprocess")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time, then exit")
    p.add_argument("--report-only", action="store_true", help="do not train: re-collect finished runs and re-plot")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.dry_run and args.report_only:
        p.error("--dry-run and --report-only exclude each other")
    return args


def plan_from_args(args: argparse.Namespace) -> Plan:
    budget = Budget(args.iterations, args.prompts, args.group_size, args.eval_every, args.eval_images)
    return build_plan(args.out, only=args.only, seeds=tuple(args.seeds), ablation_seeds=tuple(args.ablation_seeds),
                      budget=budget, extra_overrides=tuple(args.overrides), variants=tuple(args.variants))


def print_plan(plan: Plan, estimates: dict[str, RunEstimate], threads: int) -> None:
    """One line per run (what it changes, NFE per image per iteration, estimated minutes, status)
    and the estimated time of the runs still to train."""
    b, specs = plan.budget, plan.runs()
    print(f"comparison plan: {len(specs)} runs into {plan.out_dir}; each {b.iterations} iterations of "
          f"{b.prompts_per_iteration} prompts x {b.group_size} images, held-out evaluation every {b.eval_every} "
          f"iterations ({b.eval_images_per_category} images per category), {threads} threads")
    if plan.extra_overrides:
        print(f"extra overrides on every run: {' '.join(plan.extra_overrides)}")
    width = max(len(s.name) for s in specs)
    print(f"  {'run':<{width}}  {'NFE/image/iter':>16}  {'est.':>8}  status    change")
    todo = 0.0
    for s in specs:
        e = estimates[s.name]
        status = "finished" if is_finished(s) else ("resume" if s.run_dir.exists() else "to run")
        if status != "finished":
            todo += e.seconds
        nfe = f"{e.nfe_rollout:g}+{e.nfe_old:g}+{e.nfe_update:g}"
        print(f"  {s.name:<{width}}  {nfe:>16}  {e.seconds / 60:>4.1f} min  {status:<8}  {s.variant.change or '-'}")
    print(f"estimated training time of the runs left: {todo / 60:.0f} min (model evaluations priced at their "
          "speed on 2 quiet CPU cores; refined as runs finish)")


def machine_meta(args: argparse.Namespace) -> dict:
    """How this invocation launches runs (written to launch.json when it trains)."""
    import torch

    return {"cpu_count": os.cpu_count(), "threads": args.threads, "launcher": args.launcher, "torch": torch.__version__}


def write_outputs(plan: Plan, meta: dict) -> tuple[int, list[Path]]:
    """Collect the finished runs and write results.json/csv, summary.md and the PNGs.
    Returns (number of runs reported, written paths)."""
    from vgrpo.world.prompts import heldout_prompts_by_category

    results, missing = collect_plan(plan)
    if not results:
        return 0, []
    meta = {**meta, "categories": len(heldout_prompts_by_category()),
            "reported_at": datetime.datetime.now().isoformat(timespec="seconds")}
    report = build_report(plan, results, missing, meta)
    out = plan.out_dir
    figures = []
    if report.main_curves:
        labels = {s.variant.key: f"{s.variant.label} ({len(s.seeds)} seed{'s' if len(s.seeds) > 1 else ''})"
                  for s in report.main}
        figures += plot_main_curves(report.main_curves, labels, out)
    if report.ablations:
        figures.append(plot_ablations(report.ablations, out / "ablations.png"))
    write_json(report, out / "results.json")
    write_csv(report, out / "results.csv")
    write_markdown(report, out / "summary.md", figures)
    for t in report.targets:
        if t.reached:
            print(f"{t.candidate} reaches {t.reference}'s final {t.measure} {t.target_score:.3f} with "
                  f"{100 * t.seconds_fraction:.0f}% of its training wall-clock and "
                  f"{100 * t.nfe_fraction:.0f}% of its NFE")
        else:
            print(f"{t.candidate} does not reach {t.reference}'s final {t.measure} {t.target_score:.3f}")
    return len(results), [out / "results.json", out / "results.csv", out / "summary.md", *figures]


def warn_if_threads_changed(plan: Plan, meta: dict) -> None:
    """Wall-clock comparisons need every run on the same threads: warn when finished runs were
    launched with another thread count than this invocation."""
    path = plan.out_dir / LAUNCH_FILE
    if not path.is_file() or not any(is_finished(s) for s in plan.runs()):
        return
    before = json.loads(path.read_text()).get("threads")
    if before != meta["threads"]:
        print(f"warning: finished runs in {plan.out_dir} were launched with {before} threads, this invocation "
              f"uses {meta['threads']}: their wall-clock times are not comparable (pass --threads {before})",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = plan_from_args(args)
        if not args.report_only:
            configs = resolve_all(plan)
            check_existing_runs(plan, configs)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed: list[str] = []
    meta = machine_meta(args)
    if not args.report_only:
        print_plan(plan, {name: estimate_run(cfg) for name, cfg in configs.items()}, args.threads)
        if args.dry_run:
            return 0
        warn_if_threads_changed(plan, meta)
        plan.out_dir.mkdir(parents=True, exist_ok=True)
        (plan.out_dir / LAUNCH_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            outcomes = run_all(plan.runs(), {n: estimate_run(c).seconds for n, c in configs.items()},
                               threads=args.threads, launcher=args.launcher, log_dir=plan.out_dir / "logs")
        except KeyboardInterrupt:
            print("\ninterrupted: re-run the same command to resume (finished runs are skipped, an unfinished "
                  "one continues from its last checkpoint)", file=sys.stderr)
            return 130
        failed = [o.name for o in outcomes if o.status == "failed"]
    else:  # the runs were launched by an earlier invocation: report how, when it was recorded
        path = plan.out_dir / LAUNCH_FILE
        meta = json.loads(path.read_text()) if path.is_file() else {"cpu_count": os.cpu_count()}
    try:
        count, paths = write_outputs(plan, meta)
    except MetricsError as exc:
        print(f"error: cannot build the report: {exc}", file=sys.stderr)
        return 1
    if count == 0:
        print(f"error: no finished run of this plan under {plan.out_dir}", file=sys.stderr)
        return 1
    print(f"reported {count} runs: " + ", ".join(str(p) for p in paths))
    if failed:
        print(f"error: {len(failed)} runs failed: {', '.join(failed)} (logs in {plan.out_dir / 'logs'}); "
              "re-run the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
