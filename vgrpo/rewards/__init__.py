"""Rewards: the interface (`Reward`, `RewardSet`), the shapes-world verifier and JPEG rewards.

`vgrpo.rewards.shapes` and `vgrpo.rewards.jpeg` are imported lazily (on attribute access) so the
interface stays importable without PIL.
"""

from vgrpo.rewards.base import Reward, RewardScores, RewardSet

__all__ = ["Reward", "RewardScores", "RewardSet", "ShapesReward", "JpegCompressibility", "JpegIncompressibility"]


def __getattr__(name: str):
    if name == "ShapesReward":
        from vgrpo.rewards.shapes import ShapesReward

        return ShapesReward
    if name in ("JpegCompressibility", "JpegIncompressibility"):
        from vgrpo.rewards import jpeg

        return getattr(jpeg, name)
    raise AttributeError(f"module 'vgrpo.rewards' has no attribute {name!r}")
