#!/usr/bin/env bash
# On a machine with CUDA: the packed trainer's GPU figures, the CUDA tests, and `xorjobs run --device cuda`.
# Usage: scripts/gpu_check.sh [OUT_DIR]. Uses .venv when there is one, else python3 (e.g. a GPU box whose
# image has torch); wheels in .whl/ (the project's other dependencies) are installed to a private folder.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-bench/results}
mkdir -p "$OUT_DIR"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/xorjobs-site .whl/*.whl
  export PYTHONPATH="/tmp/xorjobs-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA here: this check needs a GPU")'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# The CUDA tests (graph replay == eager) and the kernel measurement on this machine's CPU.
"$PY" -m pytest -q -p no:cacheprovider tests/test_packed_batched.py tests/test_blas_orders.py 2>&1 | tail -n 15 \
  | tee "$OUT_DIR/gpu_tests.txt" || true
exec "$PY" -m scripts.gpu_check "$OUT_DIR"
