"""Print a markdown table from a pytest-benchmark JSON file written by `pytest bench/ ...`:
`python -m bench.ops_table bench/results/cpu_xeon_2core.json` (median ms, speedup vs reference-eager and
vs reference-compiled, GB/s from the minimal bytes moved and its fraction of the copy bound of the
same bytes, peak extra memory of one call)."""

from __future__ import annotations

import json
import sys

MODES = ("forward", "backward", "full")


def main(path: str) -> None:
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        kernel = b["name"].split("[")[0].removeprefix("test_")
        if kernel not in ("elbo", "noising"):
            continue
        shape, rest = b["param"].split("-", 1)
        provider, mode = rest.rsplit("-", 1) if rest.endswith(MODES) else (rest, "forward")
        rows[(kernel, shape, mode, provider)] = (b["stats"]["median"] * 1e3, b["extra_info"])
    info = next(iter(rows.values()))[1]
    print(f"Device: {info['device']}, dtype {info['dtype']}\n")
    print("| op | shape | mode | provider | median ms | vs eager | vs compiled | GB/s | of copy | peak extra MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (kernel, shape, mode, provider), (ms, info) in sorted(rows.items()):
        eager = rows.get((kernel, shape, mode, "reference-eager"), (ms,))[0]
        compiled = rows.get((kernel, shape, mode, "reference-compiled"), (None,))[0]
        copy = rows.get((kernel, shape, mode, "copy"), (None,))[0]
        peak = info.get("peak_extra_mib")
        print(
            f"| {kernel} | {shape} | {mode} | {provider} | {ms:.1f} | {eager / ms:.1f}x "
            f"| {_ratio(compiled, ms, 'x')} | {info['gb_per_s']:.1f} | {_ratio(copy, ms, '')} "
            f"| {'n/a' if peak is None else f'{peak:.0f}'} |"
        )


def _ratio(other_ms: float | None, ms: float, unit: str) -> str:
    """other / this (same bytes: the time ratio is the GB/s ratio), or n/a."""
    return "n/a" if other_ms is None else f"{other_ms / ms:.2f}{unit}"


if __name__ == "__main__":
    main(sys.argv[1])
