"""Weights & Biases as a second sink of `MetricsLogger` (rank 0, `logging.wandb=true`).

Project, run name and mode come from the config, else from the usual WANDB_PROJECT / WANDB_NAME /
WANDB_MODE variables, else "vgrpo" / job.name / online; files go to $WANDB_DIR or the run folder.
Metrics are logged against their `iteration` (a W&B step metric, so records redone after a resume
are accepted); the run id is kept in `<run>/wandb-run-id` so a resumed run continues the same W&B run.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

ID_FILE = "wandb-run-id"


class WandbSink:
    """A started W&B run: `log(kind, iteration, scalars)`, `image(tag, iteration, pil)`, `close()`."""

    def __init__(self, run_dir: str | Path, config: dict[str, Any], *, project: str = "", name: str = "",
                 mode: str = ""):
        import wandb

        run_dir = Path(run_dir)
        id_file = run_dir / ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
        self.wandb = wandb
        self.run = wandb.init(
            project=project or os.environ.get("WANDB_PROJECT") or "vgrpo",
            name=name or os.environ.get("WANDB_NAME") or config.get("job", {}).get("name"),
            mode=mode or os.environ.get("WANDB_MODE") or None,
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
            config=config, id=run_id, resume="allow",
        )
        id_file.write_text(run_id + "\n")
        self.run.define_metric("iteration")
        self.run.define_metric("*", step_metric="iteration")

    def log(self, kind: str, iteration: int, scalars: dict[str, float]) -> None:
        self.run.log({"iteration": iteration, **{f"{kind}/{k}": v for k, v in scalars.items()}})

    def image(self, tag: str, iteration: int, image) -> None:
        self.run.log({"iteration": iteration, tag: self.wandb.Image(image)})

    def close(self) -> None:
        self.run.finish()
