"""Whole-or-nothing file writes: write under a temporary name beside the target, then rename."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) for a temporary file next to `path`, then rename it onto `path`.

    A kill during `write` leaves `path` as it was (the rename is atomic on one filesystem).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)
