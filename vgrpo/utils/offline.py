"""The environment every vgrpo command runs in: no model hub, no probing of CUDA-only libraries.

Entry points call `use_offline_environment()` before diffusers, transformers or torchao are
imported: models load from local folders only (`local_files_only`), and torchao does not try to
load its compiled CUDA kernels (MX formats, CUTLASS), which fail loudly on CPU builds of torch and
which the float8 training path does not use. A variable the user already set is kept.
"""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TORCHAO_FORCE_SKIP_LOADING_SO_FILES": "1",
}


def use_offline_environment() -> None:
    """Set each variable of `OFFLINE_ENVIRONMENT` that is not already set."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
