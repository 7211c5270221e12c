#!/usr/bin/env bash
# Nsight Compute on the main kernels of each algo: the persistent kernels and the pointwise
# kernels of the alternating / graph step loops, LSTM and GRU, forward and backward, float32
# and bfloat16, at the bench shapes (with T cut down: every step of a launch does the same
# work, and a shorter sequence keeps ncu's replay of a persistent launch affordable).
#
# Usage: bash profiles/ncu.sh [OUTDIR]     (default profiles/results/ncu; on the device tool,
#        pass "$OUT")
# Writes one .ncu-rep per (cell, dtype, shape) and a CSV of the numbers profiles/NOTES.md
# summarises: duration, achieved DRAM bandwidth and SM throughput, registers, shared memory
# per block, achieved occupancy. Clocks are left as the card runs them (--clock-control none),
# so durations compare with the bench's event timings.
set -euo pipefail

OUTDIR="${1:-profiles/results/ncu}"
PYTHON="${PYTHON:-python3}"
STEPS="${NCU_STEPS:-64}"
mkdir -p "$OUTDIR"
command -v ncu >/dev/null || { echo "ncu not found on PATH" >&2; exit 2; }

METRICS="gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,\
dram__bytes.sum.per_second,sm__throughput.avg.pct_of_peak_sustained_elapsed,\
launch__registers_per_thread,launch__shared_mem_per_block_dynamic,\
launch__grid_size,launch__block_size,sm__warps_active.avg.pct_of_peak_sustained_active"

for cell in lstm gru; do
  for dtype in float32 bfloat16; do
    for shape in "16 768" "64 512" "4 512"; do
      read -r B H <<<"$shape"
      tag="${cell}_${dtype}_T${STEPS}_B${B}_H${H}"
      ncu --clock-control none \
          --kernel-name regex:'persistent|pointwise' \
          --section SpeedOfLight --section MemoryWorkloadAnalysis \
          --section LaunchStats --section Occupancy \
          --metrics "$METRICS" \
          --export "$OUTDIR/$tag" --force-overwrite \
          "$PYTHON" - "$cell" "$dtype" "$STEPS" "$B" "$H" <<'EOF'
"""Run each algo's forward and backward once after a warm-up, for ncu to capture."""
import sys

import cupy
import numpy as np

from cuda_rnn.layers import LAYERS

cell, dtype, T, B, H = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
cls = LAYERS[cell]
storage = np.float32 if dtype == "float32" else __import__("ml_dtypes").bfloat16
rng = np.random.default_rng(0)
for algo in ("alternating", "persistent"):
    layer = cls(H, H, dtype=dtype, device="cuda", seed=1, algo=algo)
    x = cupy.asarray(rng.standard_normal((T, B, H)).astype(storage))
    dy = cupy.asarray(rng.standard_normal((T, B, H)).astype(storage))
    for _ in range(2):  # the first run compiles and warms up; ncu sees both
        layer(x, None)
        layer.backward(dy, None)
    cupy.cuda.get_current_stream().synchronize()
    print(cell, dtype, algo, layer.algo_used, layer.algo_reason)
EOF
      ncu --import "$OUTDIR/$tag.ncu-rep" --csv --page raw --metrics "$METRICS" \
          > "$OUTDIR/$tag.csv"
    done
  done
done
echo "reports and CSVs in $OUTDIR"
