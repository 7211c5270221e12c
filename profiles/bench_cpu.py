"""Forward+backward of the NumPy LSTM against torch.nn.LSTM on the CPU, in one process.

Default shape: T=100, B=32, I=128, H=256, float32. Both sides get the same weights, input and
output gradient; each is warmed up, then timed ``--repeats`` times, and the medians and their
ratio (ours / torch; below 1.0 means we are faster) are printed. torch is timed twice: as it
runs by default (its fused oneDNN LSTM kernel where available) and with oneDNN turned off (its
own step loop of GEMM + pointwise ops, the same algorithm as ours).

    python profiles/bench_cpu.py [--T 100 --B 32 --I 128 --H 256 --repeats 15]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import cuda_rnn as cr


def _median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--B", type=int, default=32)
    parser.add_argument("--I", type=int, default=128)
    parser.add_argument("--H", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", help="also write the result row to this file")
    args = parser.parse_args()
    import torch

    rng = np.random.default_rng(0)
    ours = cr.LSTM(args.I, args.H, dtype="float32", device="cpu", seed=0)
    theirs = torch.nn.LSTM(args.I, args.H)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((args.T, args.B, args.I)).astype(np.float32)
    dy = rng.standard_normal((args.T, args.B, args.H)).astype(np.float32)
    xt, dyt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)

    def step_ours() -> None:
        ours(x)
        ours.backward(dy)

    def step_torch() -> None:
        y, _ = theirs(xt)
        y.backward(dyt)

    def fwd_ours() -> None:
        ours(x)

    def fwd_torch() -> None:
        with torch.no_grad():
            theirs(xt)

    row = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "T": args.T, "B": args.B, "I": args.I, "H": args.H, "dtype": "float32",
        "numpy": np.__version__, "torch": torch.__version__,
        "torch_onednn": torch.backends.mkldnn.is_available(), "date": time.strftime("%Y-%m-%d"),
    }
    for label, ours_fn, torch_fn in (("fwd", fwd_ours, fwd_torch), ("fwd_bwd", step_ours, step_torch)):
        ours_ms = _median_ms(ours_fn, args.repeats)
        torch_ms = _median_ms(torch_fn, args.repeats)
        with torch.backends.mkldnn.flags(enabled=False):
            loop_ms = _median_ms(torch_fn, args.repeats)
        row[label] = {"ours_ms": round(ours_ms, 3), "torch_ms": round(torch_ms, 3),
                      "ratio": round(ours_ms / torch_ms, 3),
                      "torch_no_onednn_ms": round(loop_ms, 3),
                      "ratio_no_onednn": round(ours_ms / loop_ms, 3)}
        print(f"{label:8s} ours {ours_ms:8.2f} ms   torch {torch_ms:8.2f} ms (ratio "
              f"{ours_ms / torch_ms:5.2f})   torch without oneDNN {loop_ms:8.2f} ms (ratio "
              f"{ours_ms / loop_ms:5.2f})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(row, f, indent=2)


if __name__ == "__main__":
    main()
