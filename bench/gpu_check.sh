#!/usr/bin/env bash
# GPU check of the fused ELBO op, on a CUDA machine with the repo installed (./setup.sh):
# the CUDA tests of the ops (Triton compiled for real), then the ELBO benchmark (copy bound,
# compiled reference, fused Triton op; FLUX 1024 N = 24, SD3.5 512 N = 24 and the DRAM-size
# FLUX 1024 N = 96, bf16), kept as bench/results/<gpu>_elbo.json and printed as a table; then every
# other GPU test (pytest -m gpu), the FLUX-size transformer step (eager / flash / FP8 + compile, kept
# as bench/results/<gpu>_flux.json) and two trainer iterations of the FLUX-size model on random
# weights with LoRA export (bench/flux_size_run.py, written to bench/results/<gpu>.json).
# Extra arguments go to the ELBO benchmark run, e.g. --bench-report-only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
"$PY" -m pytest -q -m "not slow" tests/test_ops_elbo_backends.py tests/test_ops_errors.py tests/test_ops_noising.py
name=$("$PY" -c "import re, torch; print(re.sub(r'[^a-z0-9]+', '_', torch.cuda.get_device_name().lower()).strip('_'))")
status=0  # a missed throughput target fails the run, after the table is printed
"$PY" -m pytest bench/bench_elbo.py --benchmark-only --benchmark-json="bench/results/${name}_elbo.json" "$@" || status=$?
"$PY" -m bench.ops_table "bench/results/${name}_elbo.json"
"$PY" -m pytest -q -m gpu tests || status=$?
"$PY" -m pytest bench/bench_flux_transformer.py --benchmark-only --benchmark-json="bench/results/${name}_flux.json" || status=$?
"$PY" -m bench.flux_size_run --out "bench/results/${name}.json" || status=$?
exit "$status"
