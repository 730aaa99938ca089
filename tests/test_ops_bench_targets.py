"""The benchmark's throughput guards: ratios from one session against bench/targets.py."""

from __future__ import annotations

import pytest

from bench import targets


@pytest.fixture
def medians(monkeypatch):
    table: dict = {}
    monkeypatch.setattr(targets, "MEDIANS", table)
    return table


def test_targets_pass_and_fail_on_the_ratio_of_medians(medians):
    shape = "flux1024_dram"
    medians.update({(shape, "full", "copy"): 0.030, (shape, "full", "reference-compiled"): 0.090})
    medians[(shape, "full", "fused")] = 0.045  # 2.0x compiled, 0.67 of copy
    lines, failed = targets.evaluate("cpu")
    assert len(lines) == 2 and not failed
    medians[(shape, "full", "fused")] = 0.070  # 1.29x compiled, 0.43 of copy
    lines, failed = targets.evaluate("cpu")
    assert len(failed) == 2 and all(line.endswith("BELOW") for line in failed)


def test_unmeasured_providers_and_other_devices_are_not_judged(medians):
    medians[("flux1024_dram", "full", "fused")] = 1.0  # no copy, no compiled in this session
    assert targets.evaluate("cpu") == ([], [])
    medians[("flux1024_dram", "full", "copy")] = 0.1
    assert [t.device for t in targets.TARGETS if t.shape == "flux1024_dram"].count("cuda") == 2
    lines, failed = targets.evaluate("cuda")
    assert len(failed) == 1 and "copy" in failed[0]
