"""One command line for every entry point: typed option dataclasses, config files, generated help.

An entry point's options are a dataclass whose fields carry docstrings (the string literal after
each field); a field holding a dataclass is a group of keys (`--group.key`). Its command line:

    --config FILE      a TOML (.toml) or YAML (.yaml / .yml) file: keys at the top level, one table
                       per group (`[optim]` / `optim:`)
    --key VALUE        or --key=VALUE; `-` and `_` are the same in a key (--per-prompt = --per_prompt);
                       a list takes comma-separated values or several values (--prompts a b); a
                       bool key alone is a switch (--ema = --ema true)
    --print-config     print the resolved options as JSON and exit (nothing is checked or loaded)
    -h, --help         the entry point's doc, then every key with its type, default and docstring

Precedence: the defaults (or a preset) < the config file < the command line.

The API, for entry points:
    parse(cls, argv, doc, check=...)   the options (the whole command line of a simple entry point;
                                       exits 0 after --help / --print-config, 2 on a bad input)
    split(argv, roots, extra=...)      the steps one by one, for an entry point with its own
    set_key(obj, key, text)            extras (vgrpo.train: presets): argv -> CommandLine, then
    apply_file_values(obj, values, f)  the file's values and the command line's texts set on an
    read_config_file(path)             options object, each parsed by its field's type
    key_lines(obj) / field_docstrings  the generated help / reference
    ConfigError                        every problem; the message names the key

Field types: str, int, float, bool, Literal[...], T | None ("none" on the command line), list[T],
a nested dataclass (a group). A field without a default is required. An entry point:

    @dataclass
    class Options:
        out: str
        "Output folder."
        seeds: list[int] = field(default_factory=lambda: [0])
        "Seeds to run."

    def main(argv=None):
        o = cli.parse(Options, argv, __doc__, check=lambda o: [] if o.seeds else ["--seeds is empty"])

Own code, not tyro or jsonargparse: the `--section.key` syntax, its typed parsing and error texts
existed before (vgrpo.train), the same parser reads the config files (TOML and YAML alike, with
the config's error messages) and feeds the generated config reference of docs/trainer.md; the
whole machinery is this file, with no dependency beyond the standard library (pyyaml for YAML).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
MISSING = dataclasses.MISSING
"""The value of a required option (a field without default) until it is given."""
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class ConfigError(ValueError):
    """A problem with a command's options (command line, config file or values); the message names the key."""


# ----------------------------------------------------------------------------- types and values


def _optional_inner(tp: Any) -> Any | None:
    """T of `T | None` (None when `tp` is not optional)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return None


def parse_value(text: str, tp: Any, where: str) -> Any:
    """`text` (from the command line) as a value of type `tp`; lists are comma-separated."""
    inner = _optional_inner(tp)
    if inner is not None:
        return None if text.lower() in ("none", "null", "") else parse_value(text, inner, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return [parse_value(s.strip(), args[0], where) for s in text.split(",") if s.strip()]
    if origin is typing.Literal:
        value = parse_value(text, type(args[0]), where)
        if value not in args:
            raise ConfigError(f"{where} must be one of {'|'.join(map(str, args))}, got {text!r}")
        return value
    try:
        if tp is bool:
            return BOOL_WORDS[text.lower()]
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: cannot parse {text!r} as {tp.__name__}") from None
    raise ConfigError(f"{where}: unsupported field type {tp}")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` read from a TOML / YAML file as type `tp`; strings go through `parse_value`."""
    if isinstance(value, str):
        return parse_value(value, tp, where)
    inner = _optional_inner(tp)
    if inner is not None:
        return None if value is None else coerce(value, inner, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list and isinstance(value, list):
        return [coerce(v, args[0], where) for v in value]
    if origin is typing.Literal and value in args and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, bool, str) and type(value) is tp:
        return value
    raise ConfigError(f"{where}: expected {type_text(tp)}, got {value!r}")


def type_text(tp: Any) -> str:
    """`tp` as --help shows it: float, str | None, list[str], x|v (a Literal)."""
    if typing.get_origin(tp) is typing.Literal:
        return "|".join(map(str, typing.get_args(tp)))
    text = str(tp).replace("typing.", "")
    return text if "[" in text or "|" in text else getattr(tp, "__name__", text)


def default_text(value: object) -> str:
    """A default as --help and the config reference show it (lists comma-separated)."""
    if value is MISSING:
        return "required"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


# ----------------------------------------------------------------------------- keys


def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}


def resolve_key(obj: Any, dotted: str, where: str = "") -> tuple[Any, str, Any]:
    """(object holding the field, field name, field type) of `key` or `group.key` of the dataclass
    `obj` (a class when only the type is wanted); `where` is `obj`'s own dotted name, for messages."""
    keys = dotted.split(".")
    for i, key in enumerate(keys):
        hints = _hints(obj if isinstance(obj, type) else type(obj))
        if key not in hints:
            if where:
                raise ConfigError(f"unknown config key {where}.{key}; keys of [{where}] are {sorted(hints)}")
            raise ConfigError(f"unknown option --{key}; the options are "
                              f"{', '.join('--' + k for k in hints)} (see --help)")
        tp, group = hints[key], dataclasses.is_dataclass(hints[key])
        full = f"{where}.{key}" if where else key
        if i == len(keys) - 1:
            if group:
                raise ConfigError(f"{full} is a group of keys; set them one by one: --{full}.<key>=value")
            return obj, key, tp
        if not group:
            raise ConfigError(f"{dotted}: {full} has no sub-keys")
        obj, where = (tp if isinstance(obj, type) else getattr(obj, key)), full
    raise AssertionError("unreachable")


def set_key(obj: Any, dotted: str, text: str, where: str = "") -> None:
    """Set `dotted` (`key` or `group.key`) of `obj` to the command-line `text`, parsed by the field's type."""
    holder, key, tp = resolve_key(obj, dotted, where)
    setattr(holder, key, parse_value(text, tp, f"{where}.{dotted}" if where else dotted))


def apply_file_values(obj: Any, values: dict[str, Any], where: str, prefix: str = "") -> None:
    """Set the nested {key: value | {key: value}} `values` read from file `where` on `obj`, each
    checked against its field's type; a table sets the keys of a group."""
    for name, value in values.items():
        dotted = f"{prefix}{str(name).replace('-', '_')}"
        if isinstance(value, dict):
            apply_file_values(obj, value, where, prefix=f"{dotted}.")
            continue
        try:
            holder, key, tp = resolve_key(obj, dotted)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        setattr(holder, key, coerce(value, tp, dotted))


def parse_toml(text: str) -> dict[str, Any]:
    """TOML text as a dict (tomllib, or the tomli backport on Python 3.10); ValueError when not valid."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    return tomllib.loads(text)


def read_config_file(path: str) -> dict[str, Any]:
    """The file's keys and tables as a nested dict; ConfigError naming the file when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path!r} is not a file")
    suffix = p.suffix.lower()
    if suffix == ".toml":
        try:
            data = parse_toml(p.read_text())
        except ValueError as exc:
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
        raise ConfigError(f"--config {path}: expected keys and tables at the top level")
    return data


# ----------------------------------------------------------------------------- the command line


@dataclass
class CommandLine:
    """argv split into its parts (nothing parsed by type yet)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    """(key with `_` for `-`, value text) of every `--key VALUE`, in order."""
    config_file: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """The values of the caller's own options (`extra` of `split`), e.g. {"preset": "flux-dev"}."""
    print_config: bool = False
    help: bool = False


def key_type(roots: Sequence[type], name: str) -> Any | None:
    """The type of key `name` in the first of the dataclasses `roots` that has it, else None."""
    for root in roots:
        try:
            return resolve_key(root, name)[2]
        except ConfigError:
            continue
    return None


def split(argv: Sequence[str], roots: Sequence[type], extra: Sequence[str] = (),
          aliases: dict[str, str] | None = None) -> CommandLine:
    """Split `argv` into `--key VALUE` pairs, `--config`, the caller's `extra` options and the two
    switches; `aliases` maps other names to keys ({"model.path": "model"}). A key's type (found in
    the first of the dataclasses `roots` that has it) decides how many words it takes: a bool one
    or none, a list every word up to the next option, others one."""
    cmd, i = CommandLine(), 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help"):
            cmd.help = True
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: options look like --key value")
        name, eq, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        name = (aliases or {}).get(name, name)
        if name == "print_config":
            cmd.print_config = True
            continue
        tp = None if name == "config" or name in extra else key_type(roots, name)
        if not eq:
            words = []
            while i < len(argv) and not argv[i].startswith("--"):
                words.append(argv[i])
                i += 1
                if tp is bool or typing.get_origin(tp) is not list:
                    break
            if tp is bool and words and words[0].lower() not in BOOL_WORDS:
                words, i = [], i - 1  # a bare switch followed by something else
            if not words and tp is not bool:
                raise ConfigError(f"--{name} needs a value (--{name} VALUE or --{name}=VALUE)")
            value = ",".join(words) if words else "true"
        if name == "config":
            cmd.config_file = value
        elif name in extra:
            cmd.extra[name] = value
        else:
            cmd.pairs.append((name, value))
    return cmd


def blank(cls: type[T]) -> T:
    """An instance of the options dataclass `cls` with its defaults, required fields MISSING."""
    required = {f.name: MISSING for f in dataclasses.fields(cls)
                if f.default is MISSING and f.default_factory is MISSING}
    return cls(**required)


def to_dict(obj: Any) -> dict[str, Any]:
    """The options as a JSON-ready dict (a required option not given is None)."""
    return dataclasses.asdict(obj, dict_factory=lambda items: {k: None if isinstance(v, type(MISSING)) else v
                                                                for k, v in items})


def print_json(obj: Any) -> None:
    print(json.dumps(to_dict(obj), indent=2))


def parse(cls: type[T], argv: Sequence[str] | None, doc: str,
          check: Callable[[T], list[str]] | None = None, aliases: dict[str, str] | None = None) -> T:
    """The options of a simple entry point: `cls`'s defaults < `--config FILE` < `--key VALUE`.

    `--help` prints `doc` and every key and exits 0; `--print-config` prints the options as JSON
    and exits 0 (no check); `aliases` as in `split`; a bad command line, a missing required option or a problem returned
    by `check(options)` prints `error: ...` and exits 2.
    """
    try:
        cmd = split(sys.argv[1:] if argv is None else list(argv), [cls], aliases=aliases)
        if cmd.help:
            print(help_text(doc, blank(cls)), end="")
            raise SystemExit(0)
        options = blank(cls)
        if cmd.config_file:
            apply_file_values(options, read_config_file(cmd.config_file), cmd.config_file)
        for key, text in cmd.pairs:
            set_key(options, key, text)
        if cmd.print_config:
            print_json(options)
            raise SystemExit(0)
        problems = [f"--{f.name} is required" for f in dataclasses.fields(options)
                    if getattr(options, f.name) is MISSING]
        problems += check(options) if check is not None and not problems else []
        if problems:
            raise ConfigError("; ".join(problems))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return options


# ----------------------------------------------------------------------------- help


def field_docstrings(cls: type) -> dict[str, str]:
    """{field name: the string literal that follows its annotation} of a dataclass (read from its module's source)."""
    tree = ast.parse(inspect.getsource(inspect.getmodule(cls)))
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    docs: dict[str, str] = {}
    body = node.body
    for stmt, nxt in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def key_lines(obj: Any, prefix: str = "") -> list[str]:
    """`  --key TYPE (default: ...)` and its docstring, for every key of the options `obj` and its groups."""
    lines: list[str] = []
    docs, hints = field_docstrings(type(obj)), _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += key_lines(value, f"{prefix}{f.name}.")
            continue
        default = "required" if value is MISSING else f"default: {default_text(value)}"
        lines.append(f"  --{prefix}{f.name} {type_text(hints[f.name])} ({default})")
        if docs.get(f.name):
            lines.append(f"      {docs[f.name]}")
    return lines


def help_text(doc: str, obj: Any) -> str:
    """`doc`, then the common options and every key of the options `obj`."""
    return "\n".join([
        doc.rstrip(), "",
        "options (--key VALUE or --key=VALUE; `-` or `_` in names; lists comma-separated or as several words):",
        "  --config FILE (TOML or YAML: keys, one table per group; the command line wins over it)",
        "  --print-config (print the resolved options as JSON and exit)",
        *key_lines(obj),
    ]) + "\n"
