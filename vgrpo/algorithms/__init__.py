"""Policy-gradient strategies the training loop calls (V-GRPO; an MDP baseline can sit beside it)."""

from vgrpo.algorithms.vgrpo import VGRPO, OldPolicy

__all__ = ["VGRPO", "OldPolicy", "build_algorithm"]


def build_algorithm(cfg):
    """The strategy named by `cfg.name` (an `AlgorithmConfig`)."""
    if cfg.name == "vgrpo":
        return VGRPO(cfg)
    raise ValueError(f"unknown algorithm {cfg.name!r}")
