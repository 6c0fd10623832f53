#!/usr/bin/env bash
# Downloads, into a git-ignored folder, the wheels modelport and its GPU tests need beyond what a CUDA
# machine image with PyTorch, CuPy, nvidia-ml-py, onnxruntime, numpy, uvloop, prometheus-client, httpx and
# pytest already holds, for a machine that reaches no package registry (then: WHEELHOUSE=<folder>
# scripts/gpu_check.sh installs them with --no-index). About 15 MB.
#
#   scripts/gpu_wheelhouse.sh [FOLDER] [PYTHON_VERSION]     # default .cache/gpu-wheels 3.12
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.cache/gpu-wheels}
PYVER=${2:-3.12}
PIP=${PIP:-$([ -x .venv/bin/pip ] && echo .venv/bin/pip || echo "python3 -m pip")}
mkdir -p "$DEST"
# shellcheck disable=SC2086
$PIP download --quiet --dest "$DEST" --no-deps --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    "tritonclient==2.73.0" "protobuf>=6.30,<7" "grpcio>=1.81.1" "h2>=4.1,<5" hpack hyperframe \
    uvicorn httptools starlette orjson python-rapidjson geventhttpclient gevent greenlet zope.event \
    zope.interface brotli pytest-asyncio anyio
echo "wheels for Python $PYVER in $DEST ($(du -sh "$DEST" | cut -f1))"
