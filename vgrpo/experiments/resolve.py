"""Resolve every planned run to its validated trainer config before anything runs, and check that
an existing run folder was made by the same config (so a resumed or skipped run belongs to the
plan: changing `--iterations` and re-running into the same folder must not mix budgets)."""

from __future__ import annotations

import json
from typing import Any

from vgrpo.experiments.plan import FLOWGRPO, Plan, PlanError, RunSpec
from vgrpo.trainer.config import Config, ConfigError, validate
from vgrpo.trainer.presets import PRESETS, load_config

# Keys that do not change what a run computes, so a folder may differ in them.
KEYS_THAT_MAY_DIFFER = ("job.output_dir", "logging.tensorboard", "logging.progress")


def resolve_config(spec: RunSpec) -> Config:
    """The trainer config of `spec` (preset + overrides), validated for one process."""
    cfg = load_config(spec.variant.preset, spec.overrides())
    validate(cfg, 1)
    return cfg


def resolve_all(plan: Plan) -> dict[str, Config]:
    """Config of every run of `plan` by run name; one PlanError lists every problem."""
    configs: dict[str, Config] = {}
    problems: list[str] = []
    for spec in plan.runs():
        try:
            configs[spec.name] = resolve_config(spec)
        except ConfigError as exc:
            message = f"run {spec.name}: {exc}"
            if spec.variant.preset == FLOWGRPO.preset and FLOWGRPO.preset not in PRESETS:
                message = (f"run {spec.name}: this trainer has no preset {FLOWGRPO.preset!r} (the Flow-GRPO "
                           "baseline is not installed); run the ablations alone with --only ablations")
            if message not in problems:
                problems.append(message)
    if problems:
        raise PlanError("the planned runs cannot start:\n  - " + "\n  - ".join(problems))
    return configs


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """`section.key: folder has A, plan wants B` for every result-relevant key that differs."""
    have = _flatten(json.loads(json.dumps(saved)))
    want = _flatten(json.loads(json.dumps(expected)))
    out = []
    for key in sorted(set(have) | set(want)):
        if key in KEYS_THAT_MAY_DIFFER or have.get(key) == want.get(key):
            continue
        out.append(f"{key}: folder has {have.get(key, '(absent)')!r}, plan wants {want.get(key, '(absent)')!r}")
    return out


def check_existing_runs(plan: Plan, configs: dict[str, Config]) -> None:
    """Raise PlanError if a planned run's folder holds a run of another config."""
    problems = []
    for spec in plan.runs():
        saved_path = spec.run_dir / "config.json"
        if not saved_path.is_file():
            continue
        try:
            saved = json.loads(saved_path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{saved_path} is not valid JSON ({exc}); delete the run folder {spec.run_dir}")
            continue
        diffs = config_differences(saved, configs[spec.name].to_dict())
        if diffs:
            problems.append(f"{spec.run_dir} was made with another config (" + "; ".join(diffs[:5])
                            + ("; ..." if len(diffs) > 5 else "") + "): delete it or choose another --out")
    if problems:
        raise PlanError("existing run folders do not match the plan:\n  - " + "\n  - ".join(problems))
