"""torchrun entry for the multi-process trainer test: `torchrun ... tests/trainer_worker.py ROOT k=v...`.

Overrides are `section.key=value` strings applied to `tiny_config(ROOT)`.
"""

import sys
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()
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
