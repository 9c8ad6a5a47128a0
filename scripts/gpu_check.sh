#!/usr/bin/env bash
# fpbench's one prepared run on a lent GPU machine: tests, bench, paper-setting throughput and a
# chunked paper-scale run, every result under $OUT (fpbench/run/gpu_check.py says what each part writes).
#
#   on the GPU machine (POT's wheel carried in .whl, see README "GPU"):  bash scripts/gpu_check.sh
#   on a CPU at tiny sizes (tests/test_gpu_check.py runs it so, with FPBENCH_SKIP=bench,device_tests):
#     FPBENCH_DEVICE=cpu FPBENCH_TINY=1 OUT=/tmp/gpu bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
DEVICE=${FPBENCH_DEVICE:-cuda}
ARGS=(--device "$DEVICE" --out "$OUT" --steps "${FPBENCH_STEPS:-20}" --run-minutes "${FPBENCH_RUN_MINUTES:-3}")
if [ "${FPBENCH_TINY:-0}" = 1 ]; then ARGS+=(--tiny); fi
if [ -n "${FPBENCH_SKIP:-}" ]; then ARGS+=(--skip "$FPBENCH_SKIP"); fi
# The device image has torch, numpy, scipy, pandas, seaborn, tabulate, tqdm and pytest, not POT.
if ! python3 -c "import ot" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1   # fpbench from this checkout
mkdir -p "$OUT"
python3 -m fpbench.run.gpu_check "${ARGS[@]}" 2>&1 | tee "$OUT/gpu_check.log"
