#!/usr/bin/env bash
# Run on a machine with CUDA (and torch with CUDA installed in .venv): GPU vs CPU on the same jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA here: this check needs a GPU")'
exec .venv/bin/python -m scripts.gpu_check
