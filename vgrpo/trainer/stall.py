"""Fail fast: stop a run whose iterations keep making no update, naming why.

An iteration makes no update when no sample has a valid reward, when every group's rewards are
equal (all advantages 0: no learning signal), or when every optimizer step met a non-finite
gradient norm. The decision uses globally reduced numbers, so every rank stops at the same
iteration. `job.max_skipped_iterations` consecutive such iterations raise `TrainingStalledError`.
"""

from __future__ import annotations

from collections import Counter

NO_VALID_REWARDS = "no valid rewards (every reward failed or was NaN/inf, or every image was non-finite)"
ZERO_VARIANCE = "zero-variance groups (within every group all rewards are equal: no learning signal)"
NON_FINITE_LOSS = "non-finite loss (every optimizer step had a NaN/inf gradient norm)"


class TrainingStalledError(RuntimeError):
    """Too many consecutive iterations without an update; the message names the causes."""


class SkipStreak:
    """Counts consecutive iterations without an update; `limit` 0 = never stop."""

    def __init__(self, limit: int):
        self.limit = limit
        self.skipped: list[tuple[int, str]] = []

    def record(self, iteration: int, cause: str | None) -> None:
        """Note `iteration`'s outcome (None = it updated); raise once the streak reaches `limit`."""
        if cause is None:
            self.skipped.clear()
            return
        self.skipped.append((iteration, cause))
        if self.limit and len(self.skipped) >= self.limit:
            counts = Counter(c for _, c in self.skipped)
            causes = "; ".join(f"{c} x{n}" for c, n in counts.items())
            raise TrainingStalledError(
                f"stopping: {len(self.skipped)} consecutive iterations ({self.skipped[0][0]}-{self.skipped[-1][0]}) "
                f"made no update: {causes} (job.max_skipped_iterations={self.limit})"
            )
