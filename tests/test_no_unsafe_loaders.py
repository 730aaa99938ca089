"""Nothing the package loads from disk can execute code: a static scan of vgrpo/ and kernels/.

Refused (found with the syntax tree, so comments, strings and method names such as `.eval()` do
not count): `torch.load` without `weights_only=True`, any `weights_only=False`, `pickle` / `dill` /
`marshal` / `joblib` / `shelve` loads, `numpy.load(..., allow_pickle=True)`, `yaml.load` without a
safe loader (and `yaml.unsafe_load` / `full_load`), and the builtins `eval` / `exec`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vgrpo", "kernels")
UNPICKLING_MODULES = {"pickle", "cPickle", "dill", "marshal", "joblib", "shelve", "cloudpickle"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"}


def _dotted(node: ast.AST) -> str:
    """'a.b.c' for a Name / Attribute chain, '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """'file:line: what' for every call in `source` that can execute code from loaded data."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.keyword) and node.arg == "weights_only" and not _is_true(node.value):
            found.append((node.value.lineno, "weights_only is not True"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, last = name.rpartition(".")
        if name in ("eval", "exec"):
            found.append((node.lineno, f"builtin {name}()"))
        elif last == "load" and head in ("torch", "th", "torch.serialization") and not _is_true(_keyword(node, "weights_only")):
            found.append((node.lineno, "torch.load without weights_only=True"))
        elif head.split(".")[0] in UNPICKLING_MODULES and last.startswith(("load", "Unpickler", "open")):
            found.append((node.lineno, f"{name}()"))
        elif last == "load" and head in ("np", "numpy") and _is_true(_keyword(node, "allow_pickle")):
            found.append((node.lineno, "numpy.load(allow_pickle=True)"))
        elif head == "yaml" and last in ("unsafe_load", "full_load", "unsafe_load_all", "full_load_all"):
            found.append((node.lineno, f"{name}()"))
        elif head == "yaml" and last in ("load", "load_all"):
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            if loader is None or _dotted(loader).rpartition(".")[2] not in SAFE_YAML_LOADERS:
                found.append((node.lineno, f"{name} without a safe Loader"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def package_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_package_file_has_no_unsafe_loader(path):
    assert unsafe_loads(path.read_text(), str(path.relative_to(ROOT))) == []


def test_the_scan_finds_each_kind_of_unsafe_load():
    source = "\n".join([
        "import torch, pickle, yaml, numpy as np",
        "torch.load(f)",  # 2
        "torch.load(f, weights_only=False)",  # 3 (twice: the call and the keyword)
        "torch.load(f, map_location='cpu', weights_only=True)",  # safe
        "pickle.load(f)",  # 5
        "pickle.loads(b)",  # 6
        "yaml.load(text)",  # 7
        "yaml.load(text, Loader=yaml.SafeLoader)",  # safe
        "yaml.load(text, yaml.FullLoader)",  # 9
        "yaml.unsafe_load(text)",  # 10
        "eval(text)",  # 11
        "exec(text)",  # 12
        "model.eval()",  # safe: a method
        "np.load(f, allow_pickle=True)",  # 14
        "np.load(f)",  # safe
        "safetensors.torch.load_file(f)",  # safe
    ])
    lines = [int(hit.split(":")[1]) for hit in unsafe_loads(source)]
    assert lines == [2, 3, 3, 5, 6, 7, 9, 10, 11, 12, 14]
    assert unsafe_loads("weights_only = False\n") == []  # a plain name is not a call's keyword
