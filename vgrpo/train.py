"""Train with V-GRPO.

    torchrun --nproc-per-node=1 -m vgrpo.train [--preset NAME] [--config FILE] [--section.key VALUE ...]
    python -m vgrpo.train ...                 (one process, no torchrun)
    python -m vgrpo.train --print-config      (the resolved config as JSON, then exit; no model
                                               loaded, no path checked)

Precedence: preset < config file (TOML / YAML, may name its `preset`) < command-line overrides;
`--section.key VALUE` and `--section.key=VALUE` both work, lists are comma-separated.

The config is validated before any model is loaded; the run folder (`job.output_dir/job.name`)
receives config.json, metrics.jsonl, tensorboard/, eval/, samples/, checkpoints/, reward_curve.png.
"""

from __future__ import annotations

import logging
import os
import sys

from vgrpo.utils.offline import use_offline_environment

use_offline_environment()

from vgrpo.trainer.cli import help_text, parse_command, print_config  # noqa: E402
from vgrpo.trainer.config import ConfigError, validate  # noqa: E402
from vgrpo.utils.distributed import destroy_distributed, launched_world_size  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    try:
        command = parse_command(sys.argv[1:] if argv is None else argv)
        if command.help:
            print(help_text(__doc__), end="")
            return 0
        cfg = command.config()
        if command.print_only:  # any preset prints; paths are checked when a run starts
            print_config(cfg)
            return 0
        validate(cfg, launched_world_size())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
