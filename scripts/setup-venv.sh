#!/usr/bin/env bash
# Create .venv (if missing) and install the pinned dependency set and this package.
# CPU torch is installed first: an unpinned torch would pull gigabytes of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# TORCH_INDEX_URL: a wheel index for another torch build (PyTorch's CUDA index for GPU nodes).
.venv/bin/python -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0
# The workflow extra brings Snakemake with its cluster-generic and SLURM executor plugins.
.venv/bin/python -m pip install -q -c requirements/lock.txt -e ".[workflow,classical,dev,bmz]"
