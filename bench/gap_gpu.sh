#!/usr/bin/env bash
# The supernet-vs-standalone gap run sized for one lent GPU (issue 20): the three supernets
# (shared, layer, neuron; neuron and layer with the scale-preserving expert init) and 10
# architectures of cpu-small trained alone on the default corpus, bf16 on one CUDA device,
# 5 trainings at a time, each stopped at --steps or 1.5 minutes (one checkpoint, at the end:
# saving counts against the minutes); then `mos-search fidelity`.
# About 8 minutes on one H200-class GPU (written for it; not yet run on one).
#
#   bash bench/gap_gpu.sh                        # needs data/bible (mos-search data bible)
#   OUT=bench/results/gap-gpu bash bench/gap_gpu.sh
#   bash bench/gap_gpu.sh --device cpu --tiny    # the same script checked on a CPU in a minute,
#                                                # in bench/work/gap-gpu-tiny
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}
TINY=""
for arg in "$@"; do [ "$arg" = --tiny ] && TINY=-tiny; done
# the --tiny check keeps its runs and results apart from the real run's
WORK=${WORK:-bench/work/gap-gpu$TINY}
OUT=${OUT:-$( [ -n "$TINY" ] && echo "$WORK/results" || echo bench/results/gap-gpu )}
export PYTHONUNBUFFERED=1
exec "$PYTHON" bench/gap.py --device cuda --precision bf16 --space cpu-small --data data/bible \
    --archs 10 --steps 4000 --minutes 1.5 --max-tokens 8192 --lr 1e-3 --warmup 400 \
    --modes shared,layer,neuron --expert-inits scaled --workers 5 --threads 2 \
    --save-every 100000 --bleu-limit 200 --work "$WORK" --out "$OUT/gap.json" "$@"
