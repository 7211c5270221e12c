"""Forward and forward+backward of the NumPy cells against torch.nn.* on the CPU, in one process.

Default: LSTM at the main job's shape (T=100, B=64, I=2, H=64) and at T=100, B=32, I=128,
H=256, float32. Both sides get the same weights, input and output gradient. torch runs twice:
as it runs by default (its fused oneDNN kernel where available) and with oneDNN turned off (its
own step loop of GEMM + pointwise ops, the same algorithm as ours). After a warm-up the three
are timed round-robin, ``--repeats`` rounds, so that a change in the machine's load hits all of
them alike; the medians and the median of the per-round ratios (ours / torch; below 1.0 means
ours is faster) are printed, once in wall time and once in the process's CPU time (with one
thread, the CPU time is what a shared, loaded machine distorts least). Both sides run on
``--threads`` threads (torch.set_num_threads and the BLAS thread variables, set before NumPy
loads).

Next to them runs ``gemm_floor``: only the matrix products our fwd+bwd cannot avoid, at their
shapes, through NumPy's BLAS, the per-step ones into preallocated outputs as in the reference
(the input projection, the recurrent product of every step forward and backward, dW_ih, dW_hh
and dx). torch's fused step does the same products, so where ``floor_ratio`` (gemm_floor /
torch) is near 1, no change to our elementwise code can bring the ratio under 1: the BLAS
bounds it.

    python profiles/bench_cpu.py [--cells lstm gru rnn] [--shapes 100,64,2,64 100,32,128,256]
                                 [--repeats 30] [--threads 1] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from typing import Callable

TORCH_MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _shape(text: str) -> tuple[int, int, int, int]:
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 4 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected T,B,I,H (positive integers), got {text!r}")
    return values


def _round_robin(fns: dict[str, Callable[[], None]], repeats: int, warmup: int,
                 clock: Callable[[], float]) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append((clock() - start) * 1e3)
    return times


def _cpu() -> tuple[str, list[str]]:
    """The CPU's model name and its vector-extension flags (which decide the GEMM kernels that
    can run), from /proc/cpuinfo where there is one."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = sorted(f for f in fields.get("flags", "").split()
                   if f.startswith(("avx", "amx", "fma")))
    return model, flags


def _blas() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except (TypeError, KeyError):
        return "unknown"
    return f"{blas.get('name')} {blas.get('version')}"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def gemm_floor(cell: str, shape: tuple[int, int, int, int]) -> Callable[[], None]:
    """The matrix products of one fwd+bwd of ``cell`` at ``shape``, and nothing else."""
    import numpy as np

    from cuda_rnn.cellspec import cell_spec

    T, B, I, H = shape
    GH = cell_spec(cell).gates * H
    rng = np.random.default_rng(1)
    x, w_ih, w_hh = (rng.standard_normal(s, dtype=np.float32)
                     for s in ((T * B, I), (GH, I), (GH, H)))
    w_ih_t, w_hh_t = np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T)
    h = rng.standard_normal((T + 1, B, H), dtype=np.float32)
    d = rng.standard_normal((T, B, GH), dtype=np.float32)
    xp, dh, dx = np.empty((T * B, GH), np.float32), np.empty((B, H), np.float32), \
        np.empty((T * B, I), np.float32)
    a = np.empty((T, B, GH), np.float32)

    def run() -> None:
        np.matmul(x, w_ih_t, xp)
        for t in range(T):
            np.matmul(h[t], w_hh_t, a[t])
        for t in range(T - 1, -1, -1):
            np.matmul(d[t], w_hh, dh)
        d2 = d.reshape(T * B, GH)
        d2.T @ x
        d2.T @ h[:-1].reshape(T * B, H)
        np.matmul(d2, w_ih, dx)
    return run


def _ratio(times: dict[str, list[float]], name: str, against: str) -> float:
    """The median of the per-round ratios of ``name``'s time to ``against``'s."""
    return statistics.median(o / t for o, t in zip(times[name], times[against]))


def bench_one(cell: str, shape: tuple[int, int, int, int], repeats: int, warmup: int) -> dict:
    """Time one cell at one shape; return its result row."""
    import numpy as np
    import torch

    import cuda_rnn as cr

    T, B, I, H = shape
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    theirs = getattr(torch.nn, TORCH_MODULES[cell])(I, H)
    ours = getattr(cr, TORCH_MODULES[cell])(I, H, dtype="float32", device="cpu", seed=0)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    xt, dyt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)

    def fwd_torch() -> None:
        with torch.no_grad():
            theirs(xt)

    def fwd_bwd_torch() -> None:
        y, _ = theirs(xt)
        y.backward(dyt)

    def no_onednn(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with torch.backends.mkldnn.flags(enabled=False):
                fn()
        return run

    def fwd_bwd_ours() -> None:
        ours(x)
        ours.backward(dy)

    row: dict = {"cell": cell, "T": T, "B": B, "I": I, "H": H, "dtype": "float32"}
    for label, ours_fn, torch_fn in (("fwd", lambda: ours(x), fwd_torch),
                                     ("fwd_bwd", fwd_bwd_ours, fwd_bwd_torch)):
        fns = {"ours": ours_fn, "torch": torch_fn, "torch_no_onednn": no_onednn(torch_fn)}
        if label == "fwd_bwd":
            fns["gemm_floor"] = gemm_floor(cell, shape)
        row[label] = {}
        for clock_name, clock in (("wall", time.perf_counter), ("cpu", time.process_time)):
            times = _round_robin(fns, repeats, warmup, clock)
            med = {name: statistics.median(ts) for name, ts in times.items()}
            ratio = _ratio(times, "ours", "torch")
            ratio_loop = _ratio(times, "ours", "torch_no_onednn")
            row[label][clock_name] = {
                "ours_ms": round(med["ours"], 3), "torch_ms": round(med["torch"], 3),
                "ratio": round(ratio, 3), "torch_no_onednn_ms": round(med["torch_no_onednn"], 3),
                "ratio_no_onednn": round(ratio_loop, 3)}
            floor = ""
            if "gemm_floor" in times:
                floor_ratio = _ratio(times, "gemm_floor", "torch")
                row[label][clock_name].update(
                    gemm_floor_ms=round(med["gemm_floor"], 3), floor_ratio=round(floor_ratio, 3))
                floor = f"  gemm floor {med['gemm_floor']:7.2f} ms (ratio {floor_ratio:4.2f})"
            print(f"{cell:4s} T={T} B={B} I={I} H={H} {label:8s} {clock_name:4s} ours "
                  f"{med['ours']:7.2f} ms  torch {med['torch']:7.2f} ms (ratio {ratio:4.2f})  "
                  f"torch without oneDNN {med['torch_no_onednn']:7.2f} ms "
                  f"(ratio {ratio_loop:4.2f}){floor}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=sorted(TORCH_MODULES), default=["lstm"])
    parser.add_argument("--shapes", nargs="+", type=_shape,
                        default=[(100, 64, 2, 64), (100, 32, 128, 256)], metavar="T,B,I,H")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the result rows to this file")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    cpu, flags = _cpu()
    machine = {"cpu": cpu, "cpu_flags": flags, "cores": os.cpu_count(), "node": platform.node(),
               "blas": _blas()}
    load_before = os.getloadavg()
    rows = [bench_one(cell, shape, args.repeats, args.warmup)
            for cell in args.cells for shape in args.shapes]
    result = {
        "machine": machine,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _commit(),
        "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "numpy": np.__version__, "torch": torch.__version__,
        "torch_onednn": torch.backends.mkldnn.is_available(), "rows": rows,
    }
    print(f"load average before {result['load_average_before']}, "
          f"after {result['load_average_after']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
