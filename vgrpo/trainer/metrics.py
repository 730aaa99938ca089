"""What a run writes for people: metrics.jsonl, TensorBoard events, W&B, GPU stats. Rank 0 only.

Every record is one JSON line {"iteration": i, "kind": "train" | "eval", ...scalars}; TensorBoard
(and W&B when on, vgrpo.trainer.wandb_log) get the same scalars under `<kind>/<name>`, and the
evaluation's sample grids as images.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from vgrpo.utils.atomic import write_atomically
from vgrpo.utils.distributed import all_reduce_mean

log = logging.getLogger(__name__)


def gpu_stats(device: torch.device) -> dict[str, float]:
    """Memory (GiB) and, when NVML is available, utilisation (%) of `device`; {} on CPU."""
    if device.type != "cuda":
        return {}
    out = {
        "gpu_mem_alloc_gib": torch.cuda.memory_allocated(device) / 2**30,
        "gpu_mem_peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "gpu_mem_reserved_gib": torch.cuda.memory_reserved(device) / 2**30,
    }
    try:  # NVML (pynvml / nvidia-ml-py) is optional
        out["gpu_util_pct"] = float(torch.cuda.utilization(device))
        out["gpu_mem_util_pct"] = float(torch.cuda.memory_usage(device))
    except Exception:  # noqa: BLE001 - NVML missing or unsupported
        pass
    return out


def reduce_metrics(
    values: dict[str, list[torch.Tensor]], reductions: dict[str, str], distributed: bool,
    device: torch.device | None = None,
) -> dict[str, float]:
    """One iteration's metrics reduced over its chunks, then over the ranks, in two packed collectives.

    Everything is reduced on `device` (default: that of the first value), so the only host
    transfers are the two packed results; collectives run on that device (NCCL needs CUDA tensors).

    Args:
        values: name -> the scalar tensors reported for it (any device); every rank reports the
            same names (same chunk layout).
        reductions: name -> "mean", "max" or "min", for every name of `values`.
        distributed: whether a process group is up (the max / min collective runs only then).
    Returns:
        name -> float: the means in name order, then the maxima and minima in name order.
    """
    if device is None:
        device = next((v.device for vs in values.values() for v in vs), torch.device("cpu"))
    means = sorted(k for k in values if reductions[k] == "mean")
    extremes = sorted(k for k in values if reductions[k] != "mean")
    sign = {k: -1.0 if reductions[k] == "min" else 1.0 for k in extremes}  # min = -max(-x): one collective

    def stacked(k: str) -> torch.Tensor:
        return torch.stack([v.detach().float().to(device) for v in values[k]])

    mv = _packed([stacked(k).mean() for k in means], device)
    xv = _packed([(stacked(k) * sign[k]).max() for k in extremes], device)
    mv = all_reduce_mean(mv)
    if distributed and xv.numel():
        xv = xv.clone()
        torch.distributed.all_reduce(xv, op=torch.distributed.ReduceOp.MAX)
    out = dict(zip(means, mv.tolist()))
    out.update({k: v * sign[k] for k, v in zip(extremes, xv.tolist())})
    return out


def _packed(scalars: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    return torch.stack(scalars) if scalars else torch.zeros(0, device=device)


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of a metrics.jsonl file, optionally only those of one kind.

    A last line cut short (the run was killed while appending it) is left out with a warning.
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines[:-1]]
    if lines:
        try:
            rows.append(json.loads(lines[-1]))
        except ValueError:
            log.warning("%s: leaving out its last line, cut short: %r", path, lines[-1][:80])
    return [r for r in rows if kind is None or r.get("kind") == kind]


class MetricsLogger:
    """Appends records to `<run_dir>/metrics.jsonl` and TensorBoard (no-op on ranks > 0)."""

    def __init__(self, run_dir: str | Path, *, enabled: bool, tensorboard: bool,
                 wandb: dict[str, Any] | None = None):
        """wandb: None (off) or the keyword arguments of `WandbSink` after run_dir (config, project, ...)."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        if enabled and wandb is not None:
            from vgrpo.trainer.wandb_log import WandbSink

            self.wandb = WandbSink(run_dir, **wandb)

    def truncate_from(self, iteration: int) -> None:
        """Drop records of iterations >= `iteration` (they are redone after a resume).

        The kept records go to a new file that is then renamed over the old one: a kill meanwhile
        leaves the old file whole.
        """
        if not self.enabled or not self.path.is_file():
            return
        keep = [r for r in read_metrics(self.path) if r["iteration"] < iteration or (
            r["kind"] == "eval" and r["iteration"] == iteration)]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        write_atomically(self.path, lambda tmp: tmp.write_text(text))

    def log(self, iteration: int, kind: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"iteration": iteration, "kind": kind}
        for k, v in values.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            record[k] = v
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        scalars = {k: v for k, v in record.items()
                   if k not in ("iteration", "kind") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(f"{kind}/{k}", v, iteration)
            self.tb.flush()
        if self.wandb is not None and scalars:
            self.wandb.log(kind, iteration, scalars)

    def log_image(self, iteration: int, tag: str, image) -> None:
        """A PIL image (a sample grid) to TensorBoard and W&B under `tag`."""
        if not self.enabled:
            return
        if self.tb is not None:
            import numpy as np

            self.tb.add_image(tag, np.asarray(image.convert("RGB")), iteration, dataformats="HWC")
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.image(tag, iteration, image)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.close()
            self.wandb = None
