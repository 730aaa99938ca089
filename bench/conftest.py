"""Benchmark configuration: environment first, then collect bench_*.py files, then the guards.

Run: `pytest bench/ --benchmark-only` (add `--benchmark-json=bench/results/<machine>.json` to keep
the numbers as data). The session fails when a throughput target of bench/targets.py (ratios
measured in this run) is missed; `--bench-report-only` or VGRPO_BENCH_REPORT_ONLY=1 only reports.
"""

import os
from pathlib import Path

from vgrpo.utils.offline import use_offline_environment

os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "inductor"))
use_offline_environment()

import pytest  # noqa: E402

from bench import targets  # noqa: E402

_REPORT = pytest.StashKey[list]()


def pytest_addoption(parser):
    parser.addoption(
        "--bench-report-only",
        action="store_true",
        default=os.environ.get("VGRPO_BENCH_REPORT_ONLY") == "1",
        help="report the throughput targets of bench/targets.py without failing the session",
    )


def pytest_collect_file(parent, file_path):
    # Files named on the command line are collected by pytest itself; only add the others.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def _device() -> str:
    from bench.bench_elbo import DEVICE

    return DEVICE.type


def pytest_sessionfinish(session, exitstatus):
    if not targets.MEDIANS:
        return
    lines, failed = targets.evaluate(_device())
    session.config.stash[_REPORT] = lines
    if failed and not session.config.getoption("--bench-report-only") and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED



def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(_REPORT, None)
    if not lines:
        return
    terminalreporter.section("throughput targets (ratios measured in this run)")
    for line in lines:
        terminalreporter.write_line(line)
    if any(line.endswith("BELOW") for line in lines):
        how = "reported only (--bench-report-only)" if config.getoption("--bench-report-only") else "session failed"
        terminalreporter.write_line(f"a target was missed: {how}")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Add to each elbo row its fraction of the copy bound and its speedup vs the compiled reference."""
    for row in output_json["benchmarks"]:
        param = row.get("params") or {}
        if row["name"].split("[")[0] != "test_elbo":
            continue
        shape, mode, provider = param["shape_name"], param["mode"], param["provider"]
        median = targets.MEDIANS.get((shape, mode, provider))
        copy = targets.MEDIANS.get((shape, mode, "copy"))
        compiled = targets.MEDIANS.get((shape, mode, "reference-compiled"))
        if median is not None and copy is not None:
            row["extra_info"]["fraction_of_copy"] = copy / median
        if median is not None and compiled is not None:
            row["extra_info"]["vs_compiled"] = compiled / median
