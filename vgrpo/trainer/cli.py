"""The command line of the config-driven entry points (`vgrpo.train`): preset < config file < overrides.

    --preset NAME            a named preset (vgrpo.trainer.presets; default shapes-cpu)
    --config FILE            a TOML (.toml) or YAML (.yaml / .yml) file: one table per section
                             (`[optim]` / `optim:`), nested groups as sub-tables (`[reward.judge]`);
                             a top-level `preset = "NAME"` names the preset it starts from
    --section.key VALUE      an override; `--section.key=VALUE` works too; lists are comma-separated
    --print-config           print the resolved config as JSON and exit (no model loaded, no path checked)
    -h, --help               this text and every key with its type, default and meaning

A preset given on the command line wins over the file's `preset`. The keys, their types, defaults
and meanings come from the config dataclasses and their field docstrings, the same source as the
config reference in docs/trainer.md; a hand-written parser is used rather than tyro / jsonargparse
because the config module already owns the typed parsing of `--section.key=value` (and its error
texts), so the file, the overrides and the reference cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vgrpo.trainer.config import Config, ConfigError, _parse_value, _resolve_key, apply_overrides
from vgrpo.trainer.presets import DEFAULT_PRESET, PRESETS

OPTIONS = ("--preset", "--config")


@dataclass
class Command:
    """What the command line asked for; `config()` builds the resolved (not yet validated) Config."""

    preset: str | None = None
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    print_only: bool = False
    help: bool = False

    def config(self) -> Config:
        values = read_config_file(self.config_file) if self.config_file else {}
        preset = self.preset or values.pop("preset", None) or DEFAULT_PRESET
        values.pop("preset", None)
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; presets are {sorted(PRESETS)}")
        cfg = PRESETS[preset]()
        apply_values(cfg, values, where=self.config_file or "")
        return apply_overrides(cfg, self.overrides)


def parse_command(argv: list[str]) -> Command:
    """Split argv into preset, config file, `section.key=value` overrides and the two switches."""
    cmd, i = Command(), 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            cmd.help = True
            continue
        if arg == "--print-config":
            cmd.print_only = True
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: options look like --section.key value")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i < len(argv) and not argv[i].startswith("--"):
                value, i = argv[i], i + 1
            elif "." in name and _is_bool_key(name):
                value = "true"  # a bare boolean switch: --job.overwrite
            else:
                raise ConfigError(f"--{name} needs a value (--{name} VALUE or --{name}=VALUE)")
        if name == "preset":
            cmd.preset = value
        elif name == "config":
            cmd.config_file = value
        elif "." in name:
            cmd.overrides.append(f"{name}={value}")
        else:
            raise ConfigError(f"unknown option --{name}; options are --preset, --config, --print-config "
                              "and --section.key (see --help)")
    return cmd


def _is_bool_key(dotted: str) -> bool:
    try:
        return _resolve_key(Config(), dotted)[2] is bool
    except ConfigError:
        return False


def read_config_file(path: str) -> dict[str, Any]:
    """The file's tables as {section: {key: value}} (plus an optional top-level "preset")."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path!r} is not a file")
    suffix = p.suffix.lower()
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"--config {path}: not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"--config {path}: YAML files need pyyaml (pip install pyyaml)") from None
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {path}: not valid YAML: {exc}") from None
    else:
        raise ConfigError(f"--config {path}: expected a .toml, .yaml or .yml file")
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected tables of section keys at the top level")
    return data


def apply_values(cfg: Config, values: dict[str, Any], where: str, prefix: str = "") -> None:
    """Set the nested {section: {key: value}} `values` on `cfg`, each checked against its field's type."""
    for name, value in values.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, dict):
            apply_values(cfg, value, where, prefix=f"{dotted}.")
            continue
        if "." not in dotted:
            raise ConfigError(f"{where}: {dotted!r} is not a section table (expected e.g. [optim] lr = 1e-4)")
        obj, key, tp = _resolve_key(cfg, dotted)
        setattr(obj, key, _coerce(value, tp, dotted))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` (read from TOML / YAML) as type `tp`; strings go through the command-line parser."""
    if isinstance(value, str):
        return _parse_value(value, tp, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), where)
    if origin is list and isinstance(value, list):
        return [_coerce(v, args[0], where) for v in value]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, bool, str) and type(value) is tp:
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {name}, got {value!r}")


def help_text(doc: str) -> str:
    """`doc`, the presets, then every key: `--section.key TYPE (default: ...)` and its meaning."""
    from vgrpo.trainer.config_reference import _default_text, field_docstrings

    lines = [doc.rstrip(), "", "presets: " + ", ".join(sorted(PRESETS)), "",
             f"keys (defaults of the {DEFAULT_PRESET} preset):"]

    def walk(obj: Any, prefix: str) -> None:
        docs = field_docstrings(type(obj))
        hints = typing.get_type_hints(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
                continue
            tp = str(hints[f.name]).replace("typing.", "")
            tp = tp if "[" in tp or "|" in tp else getattr(hints[f.name], "__name__", tp)
            lines.append(f"  --{prefix}{f.name} {tp} (default: {_default_text(value)})")
            if docs.get(f.name):
                lines.append(f"      {docs[f.name]}")

    walk(Config(), "")
    return "\n".join(lines) + "\n"


def print_config(cfg: Config) -> None:
    print(json.dumps(cfg.to_dict(), indent=2))
