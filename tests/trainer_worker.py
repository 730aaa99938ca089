"""torchrun entry for the multi-process trainer test: `torchrun ... tests/trainer_worker.py ROOT k=v...`.

Overrides are `section.key=value` strings applied to `tiny_config(ROOT)`.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_setups import run, tiny_config  # noqa: E402

from vgrpo.trainer.config import apply_overrides  # noqa: E402
from vgrpo.utils.distributed import destroy_distributed  # noqa: E402

if __name__ == "__main__":
    cfg = apply_overrides(tiny_config(sys.argv[1]), sys.argv[2:])
    try:
        run(cfg)
    finally:
        destroy_distributed()
