"""Learning-rate multiplier per optimizer step: linear warm-up, then constant or cosine decay."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_multiplier(step: int, *, total_steps: int, warmup_steps: int, schedule: str, final_ratio: float) -> float:
    """The factor applied to `optim.lr` at optimizer step `step` (0-based).

    Warm-up ramps linearly from 1 / warmup_steps to 1 over the first `warmup_steps` steps. After it,
    "constant" stays at 1 and "cosine" falls along half a cosine from 1 to `final_ratio`, reached at
    step `total_steps - 1` and held beyond it (a resumed run that asks for more iterations keeps the
    floor instead of climbing back).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; schedules are {SCHEDULES}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
