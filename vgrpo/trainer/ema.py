"""Exponential moving average (EMA) of a model's trainable parameters (`optim.ema_decay`).

    ema = EMA(model, decay=0.999)     # shadows of every parameter with requires_grad, by name
    ...optimizer.step(); ema.update(model)
    with ema.averaged(model):         # the model's trainable parameters hold the EMA meanwhile
        evaluate(model)               # restored bit for bit on exit (also on an exception)

The update after the n-th optimizer step (n = 1, 2, ...) is shadow <- d shadow + (1 - d) param with
d = min(decay, n / (n + 9)), the warm-up Flow-GRPO's EMA uses, so early shadows are not dominated by
the initial weights. Shadows are float32 whatever the parameter dtype (a bf16 shadow cannot move by
(1 - 0.999) x a small update), and have the parameter's layout: an FSDP2-sharded parameter (DTensor)
has a sharded shadow, so each rank holds and updates only its own shard.

`state_dict()` is {"<param name>": shadow, ..., "num_updates": int64 tensor []}: tensors only, so it
goes into a DCP checkpoint beside the model (sharded like it) and loads without executing anything.
The EMA never changes the trained parameters' trajectory: it reads them after each step.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

NUM_UPDATES = "num_updates"


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    """{name: parameter} of `model`'s parameters with requires_grad, in model order."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


class EMA:
    """float32 shadows of `model`'s trainable parameters (named as in `model.named_parameters()`)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.shadows: dict[str, torch.Tensor] = {}
        self.restart(model)
        if not self.shadows:
            raise ValueError("the model has no trainable parameters to average")

    def restart(self, model: nn.Module) -> None:
        """Shadows = `model`'s trainable parameters now; no updates counted."""
        with torch.no_grad():
            self.shadows = {n: p.detach().to(torch.float32, copy=True) for n, p in trainable(model).items()}
        self.num_updates = 0

    def current_decay(self) -> float:
        """d of the next update: min(decay, n / (n + 9)) with n the update's number (1 for the first)."""
        n = self.num_updates + 1
        return min(self.decay, n / (n + 9))

    def _params(self, model: nn.Module) -> dict[str, nn.Parameter]:
        params = trainable(model)
        if params.keys() != self.shadows.keys():
            missing = sorted(self.shadows.keys() - params.keys())[:3]
            extra = sorted(params.keys() - self.shadows.keys())[:3]
            raise ValueError(f"model does not match the EMA's parameters (missing {missing}, unexpected {extra})")
        return params

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- d shadow + (1 - d) param for every trainable parameter (after an optimizer step)."""
        weight = 1.0 - self.current_decay()
        for name, p in self._params(model).items():
            self.shadows[name].lerp_(p.detach().to(torch.float32), weight)
        self.num_updates += 1

    @contextlib.contextmanager
    def averaged(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block `model`'s trainable parameters hold the EMA (cast to their dtype); the trained
        values are copied back bit for bit on exit. Gradients and optimizer state are untouched."""
        params = self._params(model)
        with torch.no_grad():
            saved = {n: p.detach().clone() for n, p in params.items()}
            for n, p in params.items():
                p.copy_(self.shadows[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])

    swapped_in = averaged

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{param name: float32 shadow (DTensor when sharded), "num_updates": int64 []}: tensors only."""
        return {**self.shadows, NUM_UPDATES: torch.tensor(self.num_updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore from `state_dict()`'s layout (shadows copied in place, so DCP-loaded shards fit)."""
        names = set(state) - {NUM_UPDATES}
        if names != self.shadows.keys() or NUM_UPDATES not in state:
            raise ValueError(f"EMA state does not match: {len(names)} shadows for {len(self.shadows)} parameters"
                             f"{'' if NUM_UPDATES in state else ', no num_updates'}")
        with torch.no_grad():
            for n, shadow in self.shadows.items():
                if state[n] is not shadow:
                    shadow.copy_(state[n])
        self.num_updates = int(state[NUM_UPDATES])
