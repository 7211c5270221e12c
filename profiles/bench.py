"""Benchmark our CUDA LSTM / GRU / RNN against torch.nn.* (cuDNN) in the same process.

For each cell, dtype (float32 with TF32 off on both sides, bfloat16) and shape, times the
forward and the forward+backward of one layer-direction with CUDA events after a warm-up,
and reports medians and the ratio ours / cuDNN. Writes the rows as JSON to
profiles/results/ (or --out): a list of objects with the keys gpu, cell, algo, dtype, T, B,
I, H, pass ("fwd" or "fwd_bwd"), ours_ms, cudnn_ms, ratio.

Run on a GPU machine: ``PYTHONPATH=. python profiles/bench.py`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHAPES = [(1024, 16, 768, 768), (256, 64, 512, 512), (100, 32, 256, 256)]  # (T, B, I, H)
QUICK_SHAPES = [(100, 32, 256, 256)]
CELLS = ("lstm", "gru", "rnn")
DTYPES = ("float32", "bfloat16")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
ALGO = "alternating"
RESULTS = Path(__file__).resolve().parent / "results"


def _imports() -> tuple[Any, Any] | None:
    try:
        import cupy
        import torch
    except ImportError as exc:
        print(f"bench.py needs CuPy and PyTorch with CUDA on a GPU machine: {exc}",
              file=sys.stderr)
        return None
    if not torch.cuda.is_available() or cupy.cuda.runtime.getDeviceCount() == 0:
        print("bench.py needs a CUDA GPU visible to both CuPy and PyTorch", file=sys.stderr)
        return None
    return cupy, torch


def median_ms(run: Callable[[], None], record: Callable[[], Any],
              elapsed: Callable[[Any, Any], float], sync: Callable[[], None],
              warmup: int, repeats: int) -> float:
    """Median of ``repeats`` timed calls of ``run`` (CUDA events), after ``warmup`` calls."""
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        start = record()
        run()
        stop = record()
        sync()
        times.append(elapsed(start, stop))
    return statistics.median(times)


def _ours(cupy: Any, cell: str, dtype: str, shape: tuple[int, int, int, int],
          seed: int) -> tuple[Callable[[], None], Callable[[], None]]:
    import numpy as np

    from cuda_rnn.cuda import cast, gru, lstm, rnn

    T, B, I, H = shape
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    G = GATES[cell] * H
    dev = lambda a: cast(cupy.asarray(a), dtype)  # noqa: E731
    x = dev(rng.standard_normal((T, B, I)))
    h0 = dev(rng.standard_normal((B, H)) * 0.1)
    dy = dev(rng.standard_normal((T, B, H)))
    w = [dev(rng.uniform(-k, k, s)) for s in ((G, I), (G, H), (G,), (G,))]
    if cell == "lstm":
        fwd = lambda: lstm.lstm_forward(x, h0, h0, *w)  # noqa: E731
        both = lambda: lstm.lstm_backward(dy, h0, h0, fwd()[3])  # noqa: E731
    else:
        module = gru if cell == "gru" else rnn
        forward = getattr(module, f"{cell}_forward")
        backward = getattr(module, f"{cell}_backward")
        fwd = lambda: forward(x, h0, *w)  # noqa: E731
        both = lambda: backward(dy, h0, fwd()[2])  # noqa: E731
    return fwd, both


def _cudnn(torch: Any, cell: str, dtype: str, shape: tuple[int, int, int, int],
           seed: int) -> tuple[Callable[[], None], Callable[[], None]]:
    T, B, I, H = shape
    torch.manual_seed(seed)
    tdtype = getattr(torch, dtype)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    module = cls(I, H).to(device="cuda", dtype=tdtype)
    x = torch.randn(T, B, I, device="cuda", dtype=tdtype, requires_grad=True)
    dy = torch.randn(T, B, H, device="cuda", dtype=tdtype)

    def fwd() -> None:
        module(x)

    def both() -> None:
        y, _ = module(x)
        y.backward(dy)

    return fwd, both


def run(cells: tuple[str, ...], dtypes: tuple[str, ...], shapes: list, warmup: int,
        repeats: int) -> list[dict[str, Any]] | None:
    """Time every combination; None when CuPy / PyTorch / a GPU is missing."""
    found = _imports()
    if found is None:
        return None
    cupy, torch = found
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu = torch.cuda.get_device_name()

    def cupy_event() -> Any:
        event = cupy.cuda.Event()
        event.record()
        return event

    def torch_event() -> Any:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    timers = {
        "ours": (cupy_event, lambda a, b: cupy.cuda.get_elapsed_time(a, b),
                 cupy.cuda.Device().synchronize),
        "cudnn": (torch_event, lambda a, b: a.elapsed_time(b), torch.cuda.synchronize),
    }
    rows = []
    for cell in cells:
        for dtype in dtypes:
            for shape in shapes:
                T, B, I, H = shape
                ours = _ours(cupy, cell, dtype, shape, seed=T + B)
                theirs = _cudnn(torch, cell, dtype, shape, seed=T + B)
                for index, name in enumerate(("fwd", "fwd_bwd")):
                    ms = {}
                    for side, fns in (("ours", ours), ("cudnn", theirs)):
                        try:
                            ms[side] = median_ms(fns[index], *timers[side], warmup, repeats)
                        except Exception as exc:  # report an unsupported case, keep going
                            print(f"{side} {cell} {dtype} {shape} {name}: {exc}",
                                  file=sys.stderr)
                            ms[side] = None
                    ratio = (ms["ours"] / ms["cudnn"]
                             if ms["ours"] is not None and ms["cudnn"] else None)
                    rows.append(dict(gpu=gpu, cell=cell, algo=ALGO, dtype=dtype, T=T, B=B,
                                     I=I, H=H, **{"pass": name}, ours_ms=ms["ours"],
                                     cudnn_ms=ms["cudnn"], ratio=ratio))
                    print(format_row(rows[-1]), flush=True)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_row(row: dict[str, Any]) -> str:
    """One line of the table."""
    return (f"{row['cell']:5} {row['algo']:12} {row['dtype']:9} T={row['T']:<5} B={row['B']:<3}"
            f" I={row['I']:<4} H={row['H']:<4} {row['pass']:8} ours {_fmt(row['ours_ms'], '9.3f')}"
            f" ms  cudnn {_fmt(row['cudnn_ms'], '9.3f')} ms  ratio {_fmt(row['ratio'], '6.2f')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--quick", action="store_true", help="only the smallest shape")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    rows = run(tuple(args.cells), tuple(args.dtypes), QUICK_SHAPES if args.quick else SHAPES,
               args.warmup, args.repeats)
    if rows is None:
        return 2
    out = args.out
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", rows[0]["gpu"]).strip("-") if rows else "gpu"
        out = RESULTS / f"bench-{gpu}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} rows to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
