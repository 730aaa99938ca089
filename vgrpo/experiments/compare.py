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

import shlex
import sys
from dataclasses import dataclass, field

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

from vgrpo.experiments.plan import SHIPPED_PLAN, PlanError, load_plan, resolve, select  # noqa: E402
from vgrpo.experiments.report import ReportError, write_report  # noqa: E402
from vgrpo.experiments.runner import check_folders, command, is_finished, run_all  # noqa: E402
from vgrpo.utils import cli  # noqa: E402


@dataclass
class CompareOptions:
    """The command line of `python -m vgrpo.experiments.compare` (the one CLI of vgrpo.utils.cli)."""

    plan: str = str(SHIPPED_PLAN)
    """Plan file (default: the shipped compare.toml)."""
    out: str | None = None
    """Folder of the runs and the report (None = the plan's `out`)."""
    only: list[str] = field(default_factory=list)
    """Only these groups or GROUP/RUN names."""
    seeds: list[int] = field(default_factory=list)
    """Other seeds than the plan's."""
    iterations: int | None = None
    """job.iterations of every run (a quick smoke run)."""
    set: list[str] = field(default_factory=list)
    """Overrides section.key=value applied to every run after the plan's (a list value keeps its commas)."""
    dry_run: bool = False
    """Print the trainings and their commands, then exit."""
    report_only: bool = False
    """Train nothing: report the finished runs."""


def overrides(words: list[str]) -> list[str]:
    """`--set` values as section.key=value overrides: the CLI splits a list at commas, so a piece
    without "=" continues the previous override's comma list (finetune.lora_targets=to_q,to_k)."""
    out: list[str] = []
    for w in words:
        if out and "=" not in w:
            out[-1] += "," + w
        else:
            out.append(w)
    return out


def parse_args(argv: list[str]) -> CompareOptions:
    return cli.parse(CompareOptions, argv, __doc__,
                     check=lambda o: ["--dry_run and --report_only exclude each other"] if o.dry_run and o.report_only else [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        plan = select(load_plan(args.plan), only=args.only, seeds=args.seeds, iterations=args.iterations,
                      extra=overrides(args.set), out=args.out)
        trainings = resolve(plan)
        check_folders(plan.out, trainings)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(plan.runs)} runs x {len(plan.seeds)} seeds = {len(trainings)} trainings into {plan.out}")
    for t in trainings:
        status = "finished" if is_finished(plan.out, t) else "to train"
        also = [key for key in dict.fromkeys(key for key, _ in t.serves) if key != t.named_after]
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
