"""Benchmark configuration: environment first, then collect bench_*.py files.

Run: `pytest bench/ --benchmark-only` (add `--benchmark-json=bench/results/<machine>.json` to keep
the numbers as data).
"""

import os
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "inductor"))
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

import pytest  # noqa: E402


def pytest_collect_file(parent, file_path):
    # Files named on the command line are collected by pytest itself; only add the others.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
