"""Checks that a local model directory holds what a loader needs, before anything is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def require_files(path: str | Path | None, expected: Sequence[str], what: str) -> Path:
    """Return `path` as a Path, or raise FileNotFoundError naming the path and the files expected.

    Each entry of `expected` is a relative file name; "a|b" accepts either of two names.
    """
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{what}: no path given; expected a local directory with {list(expected)}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{what}: directory {root} does not exist; expected files {list(expected)}")
    missing = [name for name in expected if not any((root / alt).exists() for alt in name.split("|"))]
    if missing:
        raise FileNotFoundError(f"{what}: {root} is missing {missing} (expected {list(expected)})")
    return root
