"""Train the runs of a plan (V-GRPO against Flow-GRPO and the ablations by default) and report them.

    python -m vgrpo.experiments.compare [--plan FILE] [--out DIR] [--only GROUP|GROUP/RUN ...]
        [--seeds K ...] [--iterations N] [--set section.key=value ...] [--dry-run | --report-only]

The plan (default: the shipped vgrpo/experiments/plans/compare.toml; the format is in
vgrpo/experiments/plan.py) lists groups of runs, each a preset plus config overrides, the seeds and
the budget in iterations. Every run of the selection is resolved to its validated trainer config
first, then trained one at a time into `<out>/<group>-<run>-seed<k>/` as `python -m vgrpo.train`
(finished ones are skipped, so re-running the same command resumes; logs in `<out>/logs/`), then
`<out>/report.md`, `results.json` and `score.png` are written. `--iterations 2` makes a quick smoke
run (use another --out). Exit status: 0 = done, 1 = a run failed or the report cannot be built,
2 = a bad plan or argument.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from vgrpo.experiments.plan import SHIPPED_PLAN, PlanError, load_plan, resolve, select  # noqa: E402
from vgrpo.experiments.report import ReportError, write_report  # noqa: E402
from vgrpo.experiments.runner import check_folders, command, is_finished, run_all  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m vgrpo.experiments.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", default=str(SHIPPED_PLAN), help="plan file (default: the shipped compare.toml)")
    p.add_argument("--out", default=None, help="folder of the runs and the report (default: the plan's `out`)")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME", help="only these groups or GROUP/RUN names")
    p.add_argument("--seeds", nargs="+", type=int, default=[], help="other seeds than the plan's")
    p.add_argument("--iterations", type=int, default=None, help="job.iterations of every run (a quick smoke run)")
    p.add_argument("--set", dest="extra", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                   help="override applied to every run after the plan's")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the trainings and their commands, then exit")
    mode.add_argument("--report-only", action="store_true", help="train nothing: report the finished runs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = select(load_plan(args.plan), only=args.only, seeds=args.seeds, iterations=args.iterations,
                      extra=args.extra, out=args.out)
        trainings = resolve(plan)
        check_folders(plan.out, trainings)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(plan.runs)} runs x {len(plan.seeds)} seeds = {len(trainings)} trainings into {plan.out}")
    for t in trainings:
        status = "finished" if is_finished(plan.out, t) else "to train"
        also = list(dict.fromkeys(key for key, _ in t.serves))[1:]  # the first is the run the folder is named after
        print(f"  {t.name}: {status}" + (f" (also {', '.join(also)})" if also else ""))
        if args.dry_run:
            print("    " + shlex.join(command(t)))
    if args.dry_run:
        return 0
    failed = []
    if not args.report_only:
        try:
            failed = run_all(plan.out, trainings)
        except KeyboardInterrupt:
            print("\ninterrupted: re-run the same command to resume", file=sys.stderr)
            return 130
    try:
        paths = write_report(plan, trainings, plan.out)
    except ReportError as exc:
        print(f"error: cannot build the report: {exc}", file=sys.stderr)
        return 1
    if not paths:
        print(f"error: no finished run of this plan under {plan.out}", file=sys.stderr)
        return 1
    print(paths[0].read_text() + "\nwrote " + ", ".join(map(str, paths)))
    if failed:
        print(f"error: {len(failed)} trainings failed: {', '.join(failed)} (logs in {plan.out / 'logs'}); "
              "re-run the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
