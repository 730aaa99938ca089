"""Test configuration: set the environment before any kernel or hub library is imported."""

import os
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

# Triton kernels run in the interpreter on machines without CUDA; must be set before import.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")
use_offline_environment()
os.environ.setdefault(
    "TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "inductor")
)

import pytest  # noqa: E402

requires_cuda = pytest.mark.skipif(not _has_cuda, reason="needs a CUDA device")
