"""The config reference of docs/trainer.md, generated from the dataclasses and their field docstrings.

`python -m vgrpo.trainer.config_reference` prints the Markdown (one table per section, defaults of
the default preset); `tests/test_config.py` checks that docs/trainer.md ends with exactly this text.
"""

from __future__ import annotations

import dataclasses

from vgrpo.trainer.config import Config
from vgrpo.trainer.presets import DEFAULT_PRESET, PRESETS
from vgrpo.utils.cli import default_text, field_docstrings

HEADER = (
    "## Config reference\n\n"
    "Defaults are those of the `shapes-cpu` preset (`python -m vgrpo.train --print-config` prints any preset).\n"
)


def render() -> str:
    """The whole config reference section as Markdown (values of the default preset)."""
    cfg = PRESETS[DEFAULT_PRESET]()
    parts = [HEADER]
    for section in dataclasses.fields(Config):
        parts += _tables(section.name, getattr(cfg, section.name))
    return "\n".join(parts)


def _tables(name: str, obj: object) -> list[str]:
    """The table of one section, then one table per group of keys in it (`reward.judge`)."""
    docs = field_docstrings(type(obj))
    rows, groups = ["| key | default | meaning |", "|---|---|---|"], []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        meaning = docs.get(f.name, "").replace("|", "\\|")
        if dataclasses.is_dataclass(value):
            groups += _tables(f"{name}.{f.name}", value)
            rows.append(f"| `{f.name}` | see `{name}.{f.name}` | {meaning} |")
        else:
            rows.append(f"| `{f.name}` | `{default_text(value)}` | {meaning} |")
    return [f"### `{name}`\n\n" + "\n".join(rows) + "\n", *groups]


if __name__ == "__main__":
    print(render(), end="")
