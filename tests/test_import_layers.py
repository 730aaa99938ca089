"""The import contract: each layer of the package imports only layers below it (docs/architecture.md).

Every `import` / `from ... import` in vgrpo/ and kernels/ is read from the source (module level and
inside functions alike), its target mapped to a layer, and an import that points to a higher layer
fails the test, naming the file, the line and both layers. Imports within one layer are allowed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the layer of its longest listed prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ops", ("vgrpo.ops", "vgrpo.kernels", "vgrpo.utils", "vgrpo.accel")),
    ("objective, world", ("vgrpo.objective", "vgrpo.world")),
    ("models, rewards, sampling", ("vgrpo.models", "vgrpo.rewards", "vgrpo.sampling")),
    ("algorithms", ("vgrpo.algorithms",)),
    ("tasks", ("vgrpo.tasks",)),
    ("trainer", ("vgrpo.trainer",)),
    ("entry points", ("vgrpo.train", "vgrpo.evaluate", "vgrpo.export", "vgrpo.pretrain", "vgrpo.sample_grid",
                      "vgrpo.experiments", "vgrpo")),
]

# (importing module, imported module): upward imports not yet removed, each with its reason.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int | None:
    """Index in LAYERS of `module` (dotted), None for a module outside the project."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "kernels":  # installed as vgrpo.kernels
        parts.insert(0, "vgrpo")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute dotted target) of every import in `path`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from vgrpo import trainer` imports the submodule vgrpo.trainer
            found += [(node.lineno, f"{base}.{alias.name}" if layer_of(f"{base}.{alias.name}") is not None
                       and f"{base}.{alias.name}" != base and _is_module(f"{base}.{alias.name}") else base)
                      for alias in node.names]
    return found


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    path = ROOT.joinpath(*(parts[1:] if parts[:2] == ["vgrpo", "kernels"] else parts))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _sources() -> list[Path]:
    return sorted([*(ROOT / "vgrpo").rglob("*.py"), *(ROOT / "kernels").rglob("*.py")])


def upward_imports() -> list[str]:
    problems = []
    for path in _sources():
        module = _module_name(path)
        own = layer_of(module)
        for line, target in _imports(path, module):
            other = layer_of(target)
            if own is None or other is None or other <= own:
                continue
            if any(module == a and (target == b or target.startswith(b + ".")) for a, b in EXCEPTIONS):
                continue
            problems.append(f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[own][0]}) imports "
                            f"{target} ({LAYERS[other][0]})")
    return problems


def test_every_module_has_a_layer():
    assert all(layer_of(_module_name(p)) is not None for p in _sources())


def test_no_module_imports_a_higher_layer():
    problems = upward_imports()
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_algorithms_and_trainer_do_not_import_the_built_in_world():
    offenders = []
    for path in _sources():
        module = _module_name(path)
        if not module.startswith(("vgrpo.algorithms", "vgrpo.trainer")):
            continue
        offenders += [f"{module}:{line} imports {target}" for line, target in _imports(path, module)
                      if target.startswith(("vgrpo.world", "vgrpo.models.shapes", "vgrpo.rewards.shapes", "vgrpo.tasks.shapes"))]
    assert not offenders, "\n".join(offenders)


def test_models_import_no_sampler():
    """A model is a velocity, not a sampler: guidance and solvers live in vgrpo.sampling, which
    imports the models (same floor), never the other way round."""
    offenders = []
    for path in _sources():
        module = _module_name(path)
        if module.startswith("vgrpo.models"):
            offenders += [f"{module}:{line} imports {target}" for line, target in _imports(path, module)
                          if target.startswith("vgrpo.sampling")]
    assert not offenders, "\n".join(offenders)


def test_exceptions_are_still_needed():
    """An exception whose import is gone must be deleted, so the list only shrinks."""
    seen = set()
    for path in _sources():
        module = _module_name(path)
        for _, target in _imports(path, module):
            seen |= {(a, b) for a, b in EXCEPTIONS if module == a and (target == b or target.startswith(b + "."))}
    assert seen == set(EXCEPTIONS), f"stale exceptions: {sorted(set(EXCEPTIONS) - seen)}"


@pytest.mark.parametrize("module, layer", [("vgrpo.ops.elbo", 0), ("vgrpo.kernels.noising", 0), ("vgrpo.sampling.rollout", 2),
                                           ("vgrpo.trainer.trainer", 5), ("vgrpo.train", 6), ("numpy", None)])
def test_layer_of_maps_modules(module, layer):
    assert layer_of(module) == layer


def test_an_upward_import_is_caught(monkeypatch):
    """The checker itself fails on an upward import (so the contract test can fail)."""
    fake = ROOT / "vgrpo" / "ops" / "_contract_probe.py"
    monkeypatch.setattr(sys.modules[__name__], "_sources", lambda: [fake])
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "from vgrpo.trainer.config import Config\n")
    assert upward_imports() == [
        "vgrpo/ops/_contract_probe.py:1: vgrpo.ops._contract_probe (ops) imports vgrpo.trainer.config (trainer)"]
