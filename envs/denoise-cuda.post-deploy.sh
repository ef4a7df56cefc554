#!/usr/bin/env bash
# Runs inside the freshly created conda env: install this workflow's `denoise` package.
set -euo pipefail
python -m pip install --no-deps "${DENOISE_SOURCE:-$PWD}"
