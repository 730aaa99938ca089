"""bench/flux_size_run.py (the GPU check's FLUX-size trainer run) with its tiny transformer on the CPU."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_tiny_flux_size_run_trains_exports_and_writes_its_results(tmp_path):
    from bench.flux_size_run import run

    out = tmp_path / "results.json"
    out.write_text(json.dumps({"kept": 1}))
    result = run("tiny", out)
    data = json.loads(out.read_text())
    assert data["kept"] == 1 and data["flux_size_trainer"] == json.loads(json.dumps(result))
    assert len(result["iterations"]) == 2 and all(it["grad_norm"] > 0 for it in result["iterations"])
    assert result["lora_parameters"] > 0 and result["export_lora_s"] > 0
