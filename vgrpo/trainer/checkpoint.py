"""Checkpoints with torch distributed checkpoint (DCP), written atomically, keep-last-k.

Layout of a run folder's `checkpoints/`:
    step-000010/            a complete checkpoint (DCP shards of model + optimizer,
                            trainer_state.json, config.json, rng-rank<r>.pt)
    .tmp-step-000020/       being written; renamed to step-000020 only once every rank is done
A crash while saving leaves only a `.tmp-*` folder, which is ignored and removed on the next start,
so the newest `step-*` folder is always complete. Only trainable parameters are saved (the LoRA
adapters, or everything for full fine-tuning); frozen base weights come from the model's own
weights on resume.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

from vgrpo.trainer.distributed import World, all_reduce_mean, barrier

log = logging.getLogger(__name__)

_STEP = re.compile(r"^step-(\d+)$")
_OPTIONS = StateDictOptions(ignore_frozen_params=True)


def rng_state() -> dict[str, Any]:
    """This process's global RNG streams (torch CPU/CUDA, numpy, python)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def parameters_finite(model: nn.Module) -> bool:
    """Whether every trainable parameter is finite on every rank (one collective)."""
    ok = True
    for p in model.parameters():
        if p.requires_grad:
            local = p.to_local() if hasattr(p, "to_local") else p
            ok = ok and bool(torch.isfinite(local).all())
    flag = torch.tensor([0.0 if ok else 1.0])
    return float(all_reduce_mean(flag)) == 0.0


class Checkpointer:
    """Saves and restores model, optimizer, RNG streams and trainer state under `folder`."""

    def __init__(self, folder: str | Path, world: World, keep_last: int = 2):
        self.folder = Path(folder)
        self.world = world
        self.keep_last = keep_last

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
        return [p for _, p in sorted(found)]

    def latest(self) -> Path | None:
        done = self.complete()
        return done[-1] if done else None

    def remove_partial(self) -> None:
        """Delete `.tmp-*` folders left by an interrupted save (rank 0)."""
        if self.world.is_main and self.folder.is_dir():
            for p in self.folder.glob(".tmp-step-*"):
                log.warning("removing incomplete checkpoint %s", p)
                shutil.rmtree(p, ignore_errors=True)
        barrier()

    def save(
        self,
        iteration: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        trainer_state: dict[str, Any],
        config: dict[str, Any],
    ) -> Path | None:
        """Write checkpoint `step-<iteration>` atomically; returns its path, or None when refused.

        A model with non-finite parameters is never written (the previous checkpoint stays).
        """
        if not parameters_finite(model):
            log.error("not saving checkpoint at iteration %d: parameters are not finite", iteration)
            return None
        final = self.folder / f"step-{iteration:06d}"
        tmp = self.folder / f".tmp-step-{iteration:06d}"
        if self.world.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        barrier()
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
        torch.save(rng_state(), tmp / f"rng-rank{self.world.rank}.pt")
        barrier()
        if self.world.is_main:
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            for old in self.complete()[: -self.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
        barrier()
        return final

    def load(self, path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Restore model, optimizer and this rank's RNG streams; return the trainer state."""
        path = Path(path)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path} is not a complete checkpoint (no trainer_state.json)")
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"],
            options=StateDictOptions(ignore_frozen_params=True, strict=False),
        )
        rng_file = path / f"rng-rank{self.world.rank}.pt"
        if rng_file.is_file():
            set_rng_state(torch.load(rng_file, weights_only=False))
        else:
            log.warning("%s has no RNG state for rank %d (saved with another world size)", path, self.world.rank)
        return json.loads((path / "trainer_state.json").read_text())
