"""The config reference of docs/trainer.md, generated from the dataclasses and their field docstrings.

`python -m vgrpo.trainer.config_reference` prints the Markdown (one table per section, defaults of
the default preset); `tests/test_config.py` checks that docs/trainer.md ends with exactly this text.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect

from vgrpo.trainer.config import Config

HEADER = (
    "## Config reference\n\n"
    "Defaults are those of the `shapes-cpu` preset (`python -m vgrpo.train --print-config` prints any preset).\n"
)


def field_docstrings(cls: type) -> dict[str, str]:
    """{field name: the string literal that follows its annotation} for a config dataclass (read from its module's source)."""
    tree = ast.parse(inspect.getsource(inspect.getmodule(cls)))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    docs: dict[str, str] = {}
    body = node.body
    for stmt, nxt in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _default_text(value: object) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def render() -> str:
    """The whole config reference section as Markdown."""
    cfg = Config()
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
            rows.append(f"| `{f.name}` | `{_default_text(value)}` | {meaning} |")
    return [f"### `{name}`\n\n" + "\n".join(rows) + "\n", *groups]


if __name__ == "__main__":
    print(render(), end="")
