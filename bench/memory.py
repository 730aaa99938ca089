"""Peak extra memory of one call and the device's name, for the benchmarks' extra info."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "cpu"
    return f"{model} ({torch.get_num_threads()} threads)"


def _cpu_peak_extra_bytes(fn: Callable[[], object]) -> int:
    """Peak of the CPU allocator's "Total Allocated" above its level before `fn()`, read from the
    profiler's memory events (every tensor allocation and free, in order)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.remove(path)
    mem = [e["args"] for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    if not mem:
        return 0
    base = mem[0]["Total Allocated"] - mem[0]["Bytes"]
    return max(m["Total Allocated"] for m in mem) - base


def peak_extra_mib(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory above the starting level while `fn()` runs (outputs included), in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return _cpu_peak_extra_bytes(fn) / 2**20
