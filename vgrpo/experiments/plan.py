"""A comparison plan is data: a TOML file of groups of runs, each run a preset plus config overrides.

    title = "..."; out = "runs/compare"; seeds = [0, 1, 2]; preset = "shapes-cpu"; metric = "score/overall"
    [compare]  candidate = "GROUP/RUN"  reference = "GROUP"      (optional: the cost-to-reach table)
    [budget]   job.iterations = 50 ...                            (overrides of every run)
    [groups.NAME]  preset = "..." (optional)  set = {...} (optional)  runs.RUN = { section.key = value, ... }

The shipped plan is vgrpo/experiments/plans/compare.toml. Loading checks the file's shape; `resolve`
turns every (run, seed) into the trainer's validated config, so a wrong key or value fails before
anything trains, naming the run. Runs whose configs are identical share one training, named after the
first of them in the whole plan, so a selection (`--only`) finds the trainings a full run made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vgrpo.trainer.cli import parse_command
from vgrpo.trainer.config import ConfigError, validate
from vgrpo.utils.cli import parse_toml

SHIPPED_PLAN = Path(__file__).parent / "plans" / "compare.toml"
RESERVED_KEYS = ("job.name", "job.output_dir", "job.seed")  # the plan's: run folders are <out>/<group>-<run>-seed<k>
FIXED = ("--logging.progress=false", "--logging.tensorboard=false")


class PlanError(ValueError):
    """A plan that cannot run; the message names the file, the group or run, and the key."""


@dataclass(frozen=True)
class Run:
    """One setting: `overrides` are `--section.key=value` arguments of `vgrpo.train`, in the order they apply."""

    group: str
    name: str
    preset: str
    overrides: tuple[str, ...]
    change: str = ""  # the group's and the run's own overrides, for tables

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


@dataclass(frozen=True)
class Plan:
    source: Path
    title: str
    out: Path
    seeds: tuple[int, ...]
    metric: str
    runs: tuple[Run, ...]
    candidate: str | None = None  # "group/run"
    reference: str | None = None  # group
    naming: tuple[Run, ...] = ()  # every run of the plan file (a selection's `runs` are some of them): names shared trainings


@dataclass
class Training:
    """One `python -m vgrpo.train` of the plan, in `<out>/<name>`, and the (run key, seed) it serves."""

    name: str
    argv: list[str]
    config: dict[str, Any]
    named_after: str = ""  # the run key ("group/run") whose folder name it has
    serves: list[tuple[str, int]] = field(default_factory=list)


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1e-4}} and {"optim.lr": 1e-4} alike -> {"optim.lr": 1e-4}."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _text(value: Any) -> str:
    """A TOML value as `vgrpo.train` parses it on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def overrides(table: dict[str, Any], where: str) -> tuple[str, ...]:
    """`--section.key=value` arguments of a TOML table of overrides."""
    out = []
    for key, value in flatten(table).items():
        if key in RESERVED_KEYS:
            raise PlanError(f"{where}: {key} is set by the plan (run folders are <out>/<group>-<run>-seed<k>)")
        if "." not in key or isinstance(value, dict):
            raise PlanError(f"{where}: {key!r} is not a section.key override")
        out.append(f"--{key}={_text(value)}")
    return tuple(out)


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any, where: str) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind):
        raise PlanError(f"{where}: {key} must be a {getattr(kind, '__name__', 'value')}, got {value!r}")
    return value


def load_plan(path: str | Path = SHIPPED_PLAN) -> Plan:
    """Read and shape-check a plan file."""
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"plan {path} is not a file")
    try:
        data = parse_toml(path.read_text())
    except ValueError as exc:
        raise PlanError(f"plan {path}: not valid TOML: {exc}") from None
    known = {"title", "out", "seeds", "preset", "metric", "compare", "budget", "groups"}
    if set(data) - known:
        raise PlanError(f"plan {path}: unknown top-level keys {sorted(set(data) - known)}; known: {sorted(known)}")
    seeds = _get(data, "seeds", list, [0], str(path))
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise PlanError(f"plan {path}: seeds must be distinct integers >= 0, got {seeds}")
    budget = overrides(_get(data, "budget", dict, {}, str(path)), f"{path} [budget]")
    groups = _get(data, "groups", dict, {}, str(path))
    runs = []
    for group, spec in groups.items():
        where = f"{path} [groups.{group}]"
        if not isinstance(spec, dict) or set(spec) - {"preset", "set", "runs"}:
            raise PlanError(f"{where}: a group has preset, set and runs, got {spec!r}")
        default = _get(data, "preset", str, "shapes-cpu", str(path))
        preset = _get(spec, "preset", str, default, where)
        common = overrides(_get(spec, "set", dict, {}, where), where)
        members = _get(spec, "runs", dict, {}, where)
        if not members:
            raise PlanError(f"{where}: no runs (runs.NAME = {{ section.key = value }})")
        for name, table in members.items():
            if not isinstance(table, dict):
                raise PlanError(f"{where}: runs.{name} must be a table of overrides, got {table!r}")
            own = common + overrides(table, f"{where} runs.{name}")
            shown = ([f"preset={preset}"] if preset != default else []) + [o[2:] for o in own]
            runs.append(Run(group, name, preset, budget + own, " ".join(shown)))
    if not runs:
        raise PlanError(f"plan {path}: no groups ([groups.NAME] with runs.RUN = {{...}})")
    compare, where = _get(data, "compare", dict, {}, str(path)), str(path)
    plan = Plan(path, _get(data, "title", str, path.stem, where), Path(_get(data, "out", str, "runs/compare", where)),
                tuple(seeds), _get(data, "metric", str, "score/overall", where), tuple(runs),
                compare.get("candidate"), compare.get("reference"))
    if plan.candidate is not None and plan.candidate not in {r.key for r in runs}:
        raise PlanError(f"plan {path}: [compare] candidate {plan.candidate!r} is not a GROUP/RUN of the plan")
    if plan.reference is not None and plan.reference not in groups:
        raise PlanError(f"plan {path}: [compare] reference {plan.reference!r} is not a group of the plan")
    return plan


def select(plan: Plan, *, only: list[str] = (), seeds: list[int] = (), iterations: int | None = None,
           extra: list[str] = (), out: str | None = None) -> Plan:
    """The runs named in `only` (groups or GROUP/RUN), other seeds, every run's job.iterations, extra
    `section.key=value` overrides applied last, another output folder."""
    runs = list(plan.runs)
    if only:
        known = {r.group for r in runs} | {r.key for r in runs}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise PlanError(f"--only {' '.join(unknown)}: not a group or GROUP/RUN of {plan.source}; groups are "
                            f"{', '.join(dict.fromkeys(r.group for r in runs))}")
        runs = [r for r in runs if r.group in only or r.key in only]
    if seeds and (min(seeds) < 0 or len(set(seeds)) != len(seeds)):
        raise PlanError(f"--seeds must be distinct integers >= 0, got {list(seeds)}")
    if iterations is not None and iterations < 1:
        raise PlanError(f"--iterations must be >= 1, got {iterations}")
    tail = overrides({k: v for k, v in (_split(e) for e in extra)}, "--set")
    tail += (f"--job.iterations={iterations}",) if iterations else ()
    runs, naming = ([replace(r, overrides=r.overrides + tail) for r in rs] for rs in (runs, plan.naming or plan.runs))
    return replace(plan, runs=tuple(runs), naming=tuple(naming), seeds=tuple(seeds) or plan.seeds,
                   out=Path(out) if out else plan.out)


def _split(text: str) -> tuple[str, str]:
    key, eq, value = text.removeprefix("--").partition("=")
    if not eq or "." not in key:
        raise PlanError(f"--set {text!r} must look like section.key=value, e.g. rollout.steps=6")
    return key, value


def _comparable(config: dict[str, Any]) -> str:
    """The config as a key: everything but the run's name and what only changes logging."""
    c = json.loads(json.dumps(config))
    c["job"].pop("name")
    c.pop("logging")
    return json.dumps(c, sort_keys=True)


def _argv(plan: Plan, run: Run, seed: int, name: str) -> list[str]:
    return ["--preset", run.preset, *run.overrides, f"--job.seed={seed}", f"--job.output_dir={plan.out}",
            f"--job.name={name}", *FIXED]


def _config(argv: list[str]) -> dict[str, Any]:
    """The validated trainer config of a training's arguments as a dict; raises ConfigError."""
    cfg = parse_command(argv).config()
    validate(cfg, 1)
    if cfg.eval.every < 0:
        raise ConfigError("eval.every must be >= 0: the report compares held-out evaluations")
    return json.loads(json.dumps(cfg.to_dict()))


def _first_names(plan: Plan) -> dict[str, tuple[str, str]]:
    """{comparable config: (folder name, run key) of the first run of the whole plan with that config}."""
    names: dict[str, tuple[str, str]] = {}
    for run in plan.naming or plan.runs:
        for seed in plan.seeds:
            name = f"{run.group}-{run.name}-seed{seed}"
            try:
                names.setdefault(_comparable(_config(_argv(plan, run, seed, name))), (name, run.key))
            except ConfigError:
                continue  # reported by resolve if the run is selected
    return names


def resolve(plan: Plan) -> list[Training]:
    """Every (run, seed) as a validated trainer config, trainings shared between identical configs (each
    named after the first run of the whole plan it serves); one PlanError lists every run that cannot start."""
    first = _first_names(plan)
    trainings: dict[str, Training] = {}
    problems = []
    for run in plan.runs:
        for seed in plan.seeds:
            name = f"{run.group}-{run.name}-seed{seed}"
            try:
                config = _config(_argv(plan, run, seed, name))
            except ConfigError as exc:
                problems.append(f"{run.key}: {exc}")
                continue
            key = _comparable(config)
            if key not in trainings and name in {t.name for t in trainings.values()}:
                problems.append(f"{run.key}: its folder name {name} is another run's; rename the group or run")
            name, named_after = first.get(key, (name, run.key))
            config["job"]["name"] = name
            training = trainings.setdefault(key, Training(name, _argv(plan, run, seed, name), config, named_after))
            training.serves.append((run.key, seed))
    if problems:
        raise PlanError(f"runs of {plan.source} cannot start:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    return list(trainings.values())
