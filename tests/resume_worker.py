"""torchrun entry of the multi-process exact-resume test: `torchrun ... tests/resume_worker.py ROOT k=v...`.

In one process group, on `tiny_config` with the overrides: an uninterrupted run of job.iterations in
ROOT/full, then in ROOT/resumed the same run stopped after iteration `stop` (an override
`stop=N`) and the same command run again to resume and finish it; finally the same command while
rank 0 holds the folder's lock, whose refusal each rank writes to ROOT/refused-rank<r>.txt.
"""

import os
import sys
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()
sys.path.insert(0, str(Path(__file__).resolve().parent))

from trainer_setups import run, tiny_config  # noqa: E402

from vgrpo.trainer.config import apply_overrides  # noqa: E402
from vgrpo.utils.distributed import destroy_distributed  # noqa: E402
from vgrpo.trainer.run_folder import RunFolderError, RunLock  # noqa: E402

if __name__ == "__main__":
    root, args = Path(sys.argv[1]), sys.argv[2:]
    stop = int(next(a for a in args if a.startswith("stop=")).split("=")[1])
    overrides = [a for a in args if not a.startswith("stop=")]
    try:
        run(apply_overrides(tiny_config(root / "full"), overrides))
        run(apply_overrides(tiny_config(root / "resumed"), [*overrides, f"job.iterations={stop}"]))
        run(apply_overrides(tiny_config(root / "resumed"), overrides))
        # a second job in a folder whose run is alive (its lock held) is refused on every rank
        rank = int(os.environ["RANK"])
        held = RunLock(root / "resumed" / "run").acquire() if rank == 0 else None
        try:
            run(apply_overrides(tiny_config(root / "resumed"), overrides))
        except RunFolderError as exc:
            (root / f"refused-rank{rank}.txt").write_text(str(exc))
        finally:
            if held is not None:
                held.release()
    finally:
        destroy_distributed()
