"""Machine-independent throughput guards of the fused ELBO op: ratios measured in one session.

Absolute times move with the machine (and with its load); a ratio between two providers measured
in the same run moves much less. Each target compares the fused op with a provider of the same
session: the compiled PyTorch reference (speedup) or a `copy_` of the same bytes (fraction of the
bandwidth bound). `bench/conftest.py` fails the benchmark session when one falls short, unless
`--bench-report-only` (or VGRPO_BENCH_REPORT_ONLY=1) asks for the report only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """fused / `against` >= `at_least` for (shape, mode) on `device` ("cpu" or "cuda").

    against "reference-compiled": speedup (its median time / fused's); "copy": fraction of the
    copy bound (fused's GB/s / copy's GB/s, same bytes).
    """

    device: str
    shape: str
    mode: str
    against: str
    at_least: float


TARGETS = (
    Target("cpu", "flux1024_dram", "full", "reference-compiled", 1.5),
    Target("cpu", "flux1024_dram", "full", "copy", 0.60),
    Target("cpu", "flux1024", "full", "reference-compiled", 1.0),  # no regression in cache
    Target("cpu", "sd35_512", "full", "reference-compiled", 1.0),
    Target("cuda", "flux1024_dram", "full", "reference-compiled", 1.5),
    Target("cuda", "flux1024_dram", "full", "copy", 0.80),
)

MEDIANS: dict[tuple[str, str, str], float] = {}
"""(shape, mode, provider) -> median seconds, filled by bench_elbo.py as its benchmarks run."""


def ratio(shape: str, mode: str, against: str) -> float | None:
    """fused vs `against` (see Target) from MEDIANS, or None when either was not measured."""
    fused = MEDIANS.get((shape, mode, "fused"))
    other = MEDIANS.get((shape, mode, against))
    if fused is None or other is None:
        return None
    return other / fused  # same bytes: time ratio = GB/s ratio


def evaluate(device: str) -> tuple[list[str], list[str]]:
    """(report lines, failed lines) for the targets of `device` whose providers were measured."""
    lines, failed = [], []
    for target in TARGETS:
        if target.device != device:
            continue
        value = ratio(target.shape, target.mode, target.against)
        if value is None:
            continue
        what = "x " + target.against if target.against != "copy" else " of the copy bandwidth"
        line = (
            f"{target.shape} {target.mode}: fused {value:.2f}{what} "
            f"(target >= {target.at_least:.2f}) {'ok' if value >= target.at_least else 'BELOW'}"
        )
        lines.append(line)
        if value < target.at_least:
            failed.append(line)
    return lines, failed
