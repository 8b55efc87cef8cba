#!/usr/bin/env bash
# GPU checks in one prepared script (about 5-8 minutes on one GPU): the `gpu` tests, a CUDA
# latency profile of 50 archs (+ predictor), TensorRT if importable, a short bf16 supernet
# training (and 2-rank torchrun/NCCL with 2+ GPUs); one table at the end, each row `ok`,
# `FAILED` or `skipped` with the reason (exit status 1 on a FAILED row; skipped rows never pass).
#
#   bash bench/gpu_check.sh                  # uses .venv if present, else the current python
#   OUT=/tmp/gpu bash bench/gpu_check.sh     # where logs, datasets and table.json go
#
# On a machine without the project installed it installs it first (CUDA build of torch from
# PyPI, `[gpu,dev]` extras); set SKIP_INSTALL=1 to use the environment as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}
if [ "${SKIP_INSTALL:-0}" != 1 ] && ! "$PYTHON" -c "import mos_search, pytest" 2>/dev/null; then
  "$PYTHON" -m pip install -q -e ".[gpu,dev]"
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" bench/gpu_check.py --out "${OUT:-bench/results/gpu_check}" "$@"
