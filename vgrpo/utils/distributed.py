"""Process group set-up, rank bookkeeping, deterministic seeding and the few collectives the loop uses.

A run launched with `python -m vgrpo.train` has no process group and behaves as rank 0 of 1;
under `torchrun` the group is initialised with nccl on GPU and gloo on CPU, with a timeout
(`parallel.timeout_s`) on every collective.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class World:
    """rank / world_size of this process and its compute device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("job.device=cuda but no CUDA device is available")
    return torch.device(name)


def launched_world_size() -> int:
    """World size announced by torchrun (1 when started without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_name: str, backend: str = "auto", timeout_s: float = 1800.0) -> World:
    """Initialise the process group when started by torchrun; pin the local GPU.

    timeout_s bounds every collective (and the rendezvous): a rank that stops answering (stopped,
    hung, lost) makes the others fail with a timeout error instead of waiting for good.
    """
    device = resolve_device(device_name)
    world_size = launched_world_size()
    if world_size > 1 or "RANK" in os.environ:
        if device.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        return World(dist.get_rank(), dist.get_world_size(), device)
    return World(0, 1, device)


def destroy_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In-place broadcast from `src` (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.broadcast(tensor, src=src)
    return tensor


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a float tensor (a copy; no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= dist.get_world_size()
    return values


def all_gather_objects(obj: object) -> list[object]:
    """Every rank's `obj`, in rank order (evaluation only: not for the hot loop)."""
    if dist.is_available() and dist.is_initialized():
        out: list[object] = [None] * dist.get_world_size()
        dist.all_gather_object(out, obj)
        return out
    return [obj]


def stream_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, stream id, iteration, index), independent of world size.

    splitmix64 mixing: unlike Python's hash of strings it is stable across processes.
    """
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        h = z ^ (z >> 31)
    return h & ((1 << 63) - 1)


def generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded with `stream_seed(*parts)`."""
    return torch.Generator().manual_seed(stream_seed(*parts))


# stream ids: one per kind of randomness
STREAM_PROMPTS = 1
STREAM_ROLLOUT_NOISE = 2
STREAM_PAIRS = 3
STREAM_EVAL_NOISE = 4
STREAM_SDE_NOISE = 5
STREAM_SDE_STEPS = 6
