#!/usr/bin/env bash
# The GPU check (scripts/gpu-check.py) with the interpreter that holds PyTorch: $PYTHON, else
# python3. Options are passed on; see docs/performance.md, section GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" scripts/gpu-check.py "$@"
