"""Rewards off the rollout's critical path: each finished chunk of samples is decoded and scored on
a worker thread while the sampler integrates the next chunk.

`ChunkScorer` is the `on_chunk` callback of `vgrpo.sampling.rollout.rollout`; `result()` waits for
the last chunk and returns the batch's `RewardScores` in sample order. Scores are the same as
scoring the whole batch at once (every reward scores images independently), only earlier. On a
GPU the worker runs on its own CUDA stream and waits for an event recorded when the chunk was
finished, so decode and reward models overlap the next chunk's denoiser calls.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import torch

from vgrpo.rewards.base import RewardScores, RewardSet

Decode = Callable[[torch.Tensor], torch.Tensor]


class ChunkScorer:
    """Decode + score chunks of one rollout batch, in the background when `overlap` is on.

    Args:
        decode: latents [m, *latent] -> images [m, 3, H, W] in [0, 1] (the adapter's decode).
        rewards: the run's RewardSet.
        prompts: the batch's B sample prompts (prompt of sample i at index i).
        overlap: score on a worker thread (True) or inline when a chunk arrives (False).
        metadata: None or one dict per sample, handed to the rewards that take it.
    """

    def __init__(
        self, decode: Decode, rewards: RewardSet, prompts: Sequence[str], *, overlap: bool = True,
        metadata: Sequence[dict] | None = None,
    ):
        self.decode = decode
        self.rewards = rewards
        self.prompts = list(prompts)
        self.metadata = None if metadata is None else list(metadata)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rewards") if overlap else None
        self._parts: list[tuple[int, int, Future | RewardScores]] = []
        self._stream: torch.cuda.Stream | None = None

    def __call__(self, start: int, stop: int, x0: torch.Tensor) -> None:
        """Queue samples [start, stop) whose final latents are x0 [stop - start, *latent]."""
        if not 0 <= start < stop <= len(self.prompts) or x0.shape[0] != stop - start:
            raise ValueError(
                f"chunk [{start}, {stop}) with {x0.shape[0]} samples does not fit a batch of "
                f"{len(self.prompts)} prompts"
            )
        if self._pool is None:
            self._parts.append((start, stop, self._score(start, stop, x0, None)))
            return
        event = None
        if x0.is_cuda:
            if self._stream is None:
                self._stream = torch.cuda.Stream(device=x0.device)
            event = torch.cuda.Event()
            event.record()  # on the producer's (current) stream
            x0.record_stream(self._stream)
        self._parts.append((start, stop, self._pool.submit(self._score, start, stop, x0, event)))

    def _score(self, start: int, stop: int, x0: torch.Tensor, event: torch.cuda.Event | None) -> RewardScores:
        if event is None:
            return self._decode_and_score(start, stop, x0)
        assert self._stream is not None
        with torch.cuda.stream(self._stream):
            self._stream.wait_event(event)
            return self._decode_and_score(start, stop, x0)

    def _decode_and_score(self, start: int, stop: int, x0: torch.Tensor) -> RewardScores:
        with torch.no_grad():
            images = self.decode(x0).float().clamp(0, 1)
        meta = None if self.metadata is None else self.metadata[start:stop]
        return self.rewards(images, self.prompts[start:stop], metadata=meta)

    def result(self) -> RewardScores:
        """Wait for every chunk; scores [B, R] and valid [B] in sample order.

        Raises ValueError when the chunks do not cover the batch exactly once; an exception of the
        decode (not of a reward: those are isolated by `RewardSet`) is re-raised here.
        """
        try:
            parts = sorted(
                (s, e, p.result() if isinstance(p, Future) else p) for s, e, p in self._parts
            )
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
        covered = [(s, e) for s, e, _ in parts]
        expected_starts = [0] + [e for _, e in covered[:-1]]
        if not parts or [s for s, _ in covered] != expected_starts or covered[-1][1] != len(self.prompts):
            raise ValueError(f"rollout chunks {covered} do not cover the {len(self.prompts)} samples once")
        return RewardScores(
            scores=torch.cat([p.scores for _, _, p in parts]),
            valid=torch.cat([p.valid for _, _, p in parts]),
            names=parts[0][2].names,
        )
