"""Train with V-GRPO.

    torchrun --nproc-per-node=1 -m vgrpo.train [--preset=shapes-cpu] [--section.key=value ...]
    python -m vgrpo.train ...                 (one process, no torchrun)
    python -m vgrpo.train --print-config      (the resolved config as JSON, then exit)

The config is validated before any model is loaded; the run folder (`job.output_dir/job.name`)
receives config.json, metrics.jsonl, tensorboard/, eval/, samples/, checkpoints/, reward_curve.png.
"""

from __future__ import annotations

import json
import logging
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TORCHAO_FORCE_SKIP_LOADING_SO_FILES", "1")

from vgrpo.trainer.config import ConfigError, validate  # noqa: E402
from vgrpo.utils.distributed import destroy_distributed, launched_world_size  # noqa: E402
from vgrpo.trainer.presets import DEFAULT_PRESET, PRESETS, load_config  # noqa: E402


def parse_args(argv: list[str]) -> tuple[str, list[str], bool]:
    preset, overrides, print_only = DEFAULT_PRESET, [], False
    for arg in argv:
        if arg in ("-h", "--help"):
            print(__doc__)
            print("presets:", ", ".join(sorted(PRESETS)))
            sys.exit(0)
        if arg.startswith("--preset="):
            preset = arg.split("=", 1)[1]
        elif arg == "--print-config":
            print_only = True
        else:
            overrides.append(arg)
    return preset, overrides, print_only


def main(argv: list[str] | None = None) -> int:
    preset, overrides, print_only = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(preset, overrides)
        validate(cfg, launched_world_size())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if print_only:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vgrpo.trainer.stall import TrainingStalledError
    from vgrpo.trainer.trainer import Trainer

    try:
        summary = Trainer(cfg).train()
        if rank == 0:
            last = summary.get("eval_last", {})
            first = summary.get("eval_first", {})
            if last:
                print(f"held-out verifier score {first.get('score/overall', float('nan')):.3f} -> "
                      f"{last['score/overall']:.3f}; accuracy {first.get('accuracy/overall', float('nan')):.3f} -> "
                      f"{last['accuracy/overall']:.3f}; wall time {summary['wall_time_s']:.0f} s; run folder "
                      f"{cfg.run_dir()}")
    except TrainingStalledError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # the run folder refused the run (in use, an earlier run, changed settings)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
