#!/usr/bin/env bash
# Creates .venv and installs vgrpo with its test and training extras, CPU torch, and the C++ op.
# Usage: ./setup.sh            (GPU machines: install your CUDA torch into .venv first, then run this)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# CPU torch pinned (an unpinned torch pulls a multi-GB CUDA build); keep an existing CUDA torch.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==2.13.0"
# The C++ op builds against the torch just installed: no build isolation, so torch is not re-downloaded.
python -m pip install -q "scikit-build-core>=0.10" ninja cmake
python -m pip install -q --no-build-isolation -e ".[test]"
python -c "import vgrpo.ops; print('vgrpo installed:', vgrpo.__file__)"
