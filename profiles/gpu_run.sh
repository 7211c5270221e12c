#!/usr/bin/env bash
# One command for a GPU session: the GPU test suite, then the benchmark, with logs and a
# summary (GPU name, driver, pytest counts) written into $OUT.
#
# Run from the repository root on the GPU machine:   bash profiles/gpu_run.sh
# Environment: OUT (default profiles/results/gpu_run), PYTHON (default python3),
#   BENCH_ARGS (extra arguments for profiles/bench.py, e.g. "--quick"),
#   PYTEST_ARGS (extra arguments for pytest, e.g. "-x -k lstm").
# Python packages the machine lacks (`nvtx`, and `nvmath-python` with its cuda-core,
# cuda-pathfinder and cuda-bindings, which cuda/blas.py calls cuBLAS through) can be brought
# along as wheels in .whl/ (see the device notes); they are installed into /tmp/site first.
set -u -o pipefail

OUT=${OUT:-profiles/results/gpu_run}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" > /dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The checkout itself, without installing: cuda/loader.py falls back to ./kernels_cu.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        | sed 's/^/gpu: /'
    "$PY" - <<'PY'
import importlib
for name in ("cupy", "torch", "numpy", "nvtx", "nvmath"):
    try:
        print(f"{name}: {importlib.import_module(name).__version__}")
    except Exception as exc:  # report what is missing rather than stop
        print(f"{name}: missing ({exc})")
PY
} > "$OUT/summary.txt" 2>&1

"$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT/junit.xml" ${PYTEST_ARGS:-} tests \
    2>&1 | tee "$OUT/pytest.log"
pytest_rc=$?

"$PY" - "$OUT/junit.xml" >> "$OUT/summary.txt" 2>&1 <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
total = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
passed = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
print(f"pytest -m gpu: {passed} passed, {total['failures']} failed, {total['errors']} errors, "
      f"{total['skipped']} skipped")
PY
echo "pytest exit code: $pytest_rc" >> "$OUT/summary.txt"

# The full grid (every cell, algo, dtype and TF32 setting) is ~360 rows, more than one
# 10-minute device call: by default time LSTM and GRU, TF32 off, every algo.
"$PY" profiles/bench.py --out "$OUT/bench.json" ${BENCH_ARGS:---cells lstm gru --tf32 off} 2>&1 | tee "$OUT/bench.log"
echo "bench exit code: $?" >> "$OUT/summary.txt"

cat "$OUT/summary.txt"
exit "$pytest_rc"
