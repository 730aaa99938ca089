"""Policy-gradient strategies the training loop calls: V-GRPO and the MDP baseline Flow-GRPO."""

from vgrpo.algorithms.base import Algorithm, ChunkLoss
from vgrpo.algorithms.flowgrpo import FlowGRPO
from vgrpo.algorithms.vgrpo import VGRPO, OldPolicy

ALGORITHMS: dict[str, type[Algorithm]] = {"vgrpo": VGRPO, "flowgrpo": FlowGRPO}

__all__ = ["ALGORITHMS", "Algorithm", "ChunkLoss", "FlowGRPO", "OldPolicy", "VGRPO", "build_algorithm"]


def build_algorithm(cfg) -> Algorithm:
    """The strategy named by `cfg.name` (an `AlgorithmConfig`)."""
    if cfg.name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {cfg.name!r}; known: {sorted(ALGORITHMS)}")
    return ALGORITHMS[cfg.name](cfg)
