"""The flow-matching time shift, shared by the sampling grids and the training-pair timesteps.

It lives here, at the bottom of the house, so that neither `vgrpo.sampling` nor `vgrpo.objective`
has to import the other for it.
"""

from __future__ import annotations

import torch


def shift_timesteps(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Flow-matching time shift (SD3 / FLUX): t = s u / (1 + (s - 1) u); monotone on [0, 1]. Same shape as `u`."""
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    return shift * u / (1.0 + (shift - 1.0) * u)
