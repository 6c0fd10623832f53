#!/usr/bin/env bash
# Prepares the real-Triton peer (shared/peers/tritonserver.sh) for benchmarks/compare.py: runs its setup
# when its venv is missing, then adds onnxruntime, which benchmarks/models/ort_small imports.
# The peer's venv pins numpy 1.26 (python 3.11): onnxruntime 1.20.1 works with it.
#
#   bash benchmarks/setup_triton_peer.sh [PEER_SCRIPT]
#       PEER_SCRIPT: default $MODELPORT_TRITON_PEER, else ../shared/peers/tritonserver.sh beside the repository
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${1:-${MODELPORT_TRITON_PEER:-$ROOT/../shared/peers/tritonserver.sh}}
[ -f "$PEER" ] || { echo "no Triton peer script at $PEER (give its path)" >&2; exit 2; }
# the same folder the peer script uses
DIR=${TRITON_PEER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/modelport-triton-peer}
VENV=$DIR/venv
[ -x "$VENV/bin/python" ] || bash "$PEER" setup
"$VENV/bin/pip" install -q "onnxruntime==1.20.1" "numpy==1.26.4"
"$VENV/bin/python" -c 'import numpy, onnxruntime; print(f"Triton peer: onnxruntime {onnxruntime.__version__}, numpy {numpy.__version__}")'
