"""The command line of the config-driven entry points (`vgrpo.train`, `vgrpo.evaluate`): presets.

    --preset NAME            a named preset (vgrpo.trainer.presets; default shapes-cpu)
    --config FILE            a TOML (.toml) or YAML (.yaml / .yml) file: one table per section
                             (`[optim]` / `optim:`), nested groups as sub-tables (`[reward.judge]`);
                             a top-level `preset = "NAME"` names the preset it starts from
    --section.key VALUE      an override; `--section.key=VALUE` works too; lists are comma-separated
    --print-config           print the resolved config as JSON and exit (no model loaded, no path checked)
    -h, --help               this text and every key with its type, default and meaning

A preset given on the command line wins over the file's `preset`. The generic machinery (splitting
argv, typed parsing, config files, the generated key list) is `vgrpo.utils.cli`, shared by every
entry point; this module adds the presets and the section layout of the trainer's `Config`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vgrpo.trainer.config import Config, ConfigError, _section, apply_overrides
from vgrpo.trainer.presets import DEFAULT_PRESET, PRESETS
from vgrpo.utils import cli
from vgrpo.utils.cli import read_config_file

__all__ = ["Command", "apply_values", "help_text", "parse_command", "print_config", "read_config_file"]


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


def parse_command(argv: list[str], extra_roots: tuple[type, ...] = ()) -> Command:
    """Split argv into preset, config file, `section.key=value` overrides and the two switches.

    Keys of `extra_roots` (an entry point's own options dataclasses) are kept as `key=value` too,
    for the caller to take out; any other key must be `section.key`."""
    parts = cli.split(argv, [Config, *extra_roots], extra=("preset",))
    for name, _ in parts.pairs:
        if "." not in name and cli.key_type(extra_roots, name) is None:
            raise ConfigError(f"unknown option --{name}; options are --preset, --config, --print-config "
                              "and --section.key (see --help)")
    return Command(preset=parts.extra.get("preset"), config_file=parts.config_file,
                   overrides=[f"{k}={v}" for k, v in parts.pairs], print_only=parts.print_config, help=parts.help)


def apply_values(cfg: Config, values: dict[str, Any], where: str) -> None:
    """Set the nested {section: {key: value}} `values` on `cfg`, each checked against its field's type."""
    for name, value in values.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {name!r} is not a section table (expected e.g. [optim] lr = 1e-4)")
        _section(cfg, name)  # "unknown config section ..." names the sections
    cli.apply_file_values(cfg, values, where)


def help_text(doc: str, options: list[str] = ()) -> str:
    """`doc`, the entry point's own `options` lines, the presets, then every key:
    `--section.key TYPE (default: ...)` and its meaning."""
    lines = [doc.rstrip(), "", *options, *([""] if options else []), "presets: " + ", ".join(sorted(PRESETS)), "",
             f"keys (defaults of the {DEFAULT_PRESET} preset):", *cli.key_lines(Config())]
    return "\n".join(lines) + "\n"


def print_config(cfg: Config) -> None:
    print(json.dumps(cfg.to_dict(), indent=2))
