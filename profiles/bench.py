"""Benchmark our CUDA LSTM / GRU / RNN against torch.nn.* (cuDNN) in the same process.

For each cell, precision, shape and ``algo=`` (alternating, graph, persistent, auto), times
the forward and the forward+backward of one layer-direction with CUDA events after a
warm-up (which also captures the graphs), cuDNN timed right next to it, and reports medians
and the ratio ours / cuDNN.

The LSTM variants (``--variants``) run at :data:`VARIANT_SHAPES`, each against torch's nearest
cuDNN LSTM: with the same proj_size for the projection, the plain LSTM for peepholes and the
regularisers (cuDNN has none, so the ratio is what the variant costs against the fastest plain
cell). The regularised and layer-normalised variants are also timed against what users write
today, a step loop in Python over torch.nn.LSTMCell applying the same masks, or over the
layer-normalised step written in torch ops (keys loop_ms and loop_speedup = loop_ms / ours_ms).

Precisions: bfloat16, and float32 twice, with TF32 disallowed and allowed, the same on both
sides: ours through ``CUDA_RNN_ALLOW_TF32`` (:data:`cuda_rnn.cuda.algo.TF32_ENV`, read by the
persistent kernels at each launch; the alternating and graph loops' cuBLAS GEMMs are full
float32 either way), torch through ``torch.backends.cuda.matmul.allow_tf32`` and
``torch.backends.cudnn.allow_tf32``.

Writes the rows as JSON to profiles/results/ (or --out): a list of objects with the keys gpu,
cell, algo (as requested), dtype, tf32 (true / false for float32, null for bfloat16), T, B,
I, H, variant ("" for the plain cell), pass ("fwd" or "fwd_bwd"), ours_ms, cudnn_ms, ratio
and algo_reason (the step loop each direction ran and why, from
:func:`cuda_rnn.cuda.algo.choose_algo`).

Run on a GPU machine: ``PYTHONPATH=. python profiles/bench.py`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cuda_rnn import regularisers
from cuda_rnn.cellspec import CellSpec, cell_spec
from cuda_rnn.cuda.algo import ALGOS, TF32_ENV, choose_algo

# (T, B, I, H): the two target shapes (against cuDNN), two small-batch shapes, and a small one.
SHAPES = [(1024, 16, 768, 768), (256, 64, 512, 512), (1024, 4, 512, 512),
          (1024, 8, 1024, 1024), (100, 32, 256, 256)]
QUICK_SHAPES = [(100, 32, 256, 256)]
CELLS = ("lstm", "gru", "rnn")
#: (storage dtype, TF32 allowed); None where TF32 does not apply.
PRECISIONS = (("float32", False), ("float32", True), ("bfloat16", None))
DTYPES = ("float32", "bfloat16")
TF32_CHOICES = {"off": (False,), "on": (True,), "both": (False, True)}
RESULTS = Path(__file__).resolve().parent / "results"
#: LSTM variants: name -> (cuda_rnn options, torch.nn.LSTM keywords of the cuDNN row).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "peephole": ({"peephole": True}, {}),
    "proj256": ({"proj_size": 256}, {"proj_size": 256}),
    "zoneout-recdrop": ({"zoneout": 0.1, "recurrent_dropout": 0.25}, {}),
    "layernorm": ({"layer_norm": True}, {}),
}
VARIANT_SHAPES = [(1024, 16, 768, 768)]


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


def set_tf32(torch: Any, allowed: bool) -> None:
    """Allow or disallow TF32 for float32 products, on our side and on torch's."""
    os.environ[TF32_ENV] = "1" if allowed else "0"
    torch.backends.cuda.matmul.allow_tf32 = allowed
    torch.backends.cudnn.allow_tf32 = allowed


def _inputs(cupy: Any, spec: CellSpec, dtype: str, shape: tuple[int, int, int, int],
            seed: int) -> dict[str, Any]:
    import numpy as np

    from cuda_rnn.cuda import cast

    T, B, I, H = shape
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(H)
    shapes = spec.parameter_shapes(I, H, bias=True)

    def dev(a: Any) -> Any:
        return cast(cupy.asarray(a), dtype)

    drawn = regularisers.draw(spec, rng, T, B, H, training=True)
    weights = [dev(rng.uniform(-k, k, shape)) for shape in shapes.values()]
    if drawn.weight is not None:
        weights[1] = cast(cupy.asarray(drawn.weight) * cupy.asarray(weights[1], "float64"),
                          dtype)
    return {
        "x": dev(rng.standard_normal((T, B, I))),
        "states": [dev(rng.standard_normal((B, n)) * 0.1) for n in spec.state_sizes(H)],
        "dy": dev(rng.standard_normal((T, B, spec.output_size(H)))),
        "weights": weights,
        "masks": {name: dev(mask) for name, mask in drawn.cell.items()},
    }


def describe_choice(spec: CellSpec, algo: str, dtype: str, shape: tuple[int, int, int, int],
                    limits: Any) -> tuple[str, str, str]:
    """(forward step loop, backward step loop, algo_reason) of ``algo`` for this call."""
    T, B, _, H = shape
    unsupported = spec.unsupported_persistent or (
        "the persistent kernels take no zoneout or recurrent dropout mask"
        if regularised(spec) else "")
    fwd, bwd = (choose_algo(algo, spec.cell, d, T, B, H, dtype, limits, unsupported)
                for d in ("forward", "backward"))
    reason = f"forward: {fwd.used} ({fwd.reason}); backward: {bwd.used} ({bwd.reason})"
    return fwd.used, bwd.used, reason


def regularised(spec: CellSpec) -> bool:
    """Whether a case draws masks for the cell functions (zoneout, recurrent dropout)."""
    o = spec.options
    return bool(o.zoneout or o.zoneout_cell or o.recurrent_dropout)


def _ours(spec: CellSpec, inputs: dict[str, Any], fwd_algo: str,
          bwd_algo: str) -> tuple[Callable[[], None], Callable[[], None]]:
    from cuda_rnn.cuda.backend import cell_functions
    from cuda_rnn.cuda.graph import GraphCache

    forward, backward = cell_functions(spec.cell)
    graphs = GraphCache()  # one per benchmark case, as a layer owns one
    x, states, dy = inputs["x"], inputs["states"], inputs["dy"]
    weights, keywords = spec.function_arguments(tuple(inputs["weights"]))
    no_dstate = [None] * len(states)

    def fwd() -> Any:
        return forward(x, *states, *weights, **keywords, **inputs["masks"], algo=fwd_algo,
                       graphs=graphs)[-1]

    def both() -> None:
        backward(dy, *no_dstate, fwd(), algo=bwd_algo, graphs=graphs)

    return fwd, both


def _cudnn(torch: Any, spec: CellSpec, torch_options: dict[str, Any], dtype: str,
           shape: tuple[int, int, int, int],
           seed: int) -> tuple[Callable[[], None], Callable[[], None]]:
    T, B, I, H = shape
    torch.manual_seed(seed)
    tdtype = getattr(torch, dtype)
    cls = getattr(torch.nn, spec.title)  # torch.nn names its classes as the spec does
    module = cls(I, H, **torch_options).to(device="cuda", dtype=tdtype)
    x = torch.randn(T, B, I, device="cuda", dtype=tdtype, requires_grad=True)
    dy = torch.randn(T, B, torch_options.get("proj_size") or H, device="cuda", dtype=tdtype)

    def fwd() -> None:
        module(x)

    def both() -> None:
        y, _ = module(x)
        y.backward(dy)

    return fwd, both


def loop_variant(spec: CellSpec) -> bool:
    """Whether a case is also timed against a step loop in PyTorch (:func:`_cell_loop`)."""
    return regularised(spec) or spec.options.layer_norm


def _layer_norm_step(torch: Any, I: int, H: int, tdtype: Any) -> Callable[..., Any]:
    """The layer-normalised LSTM step in torch ops, with its parameters (as users write it)."""
    F = torch.nn.functional
    params = [torch.nn.Parameter(torch.randn(*s, device="cuda", dtype=tdtype) * 0.05)
              for s in ((4 * H, I), (4 * H, H), (4 * H,))]
    gains = [torch.nn.Parameter(torch.ones(n, device="cuda", dtype=tdtype))
             for n in (4 * H, 4 * H, H)]
    bias_c = torch.nn.Parameter(torch.zeros(H, device="cuda", dtype=tdtype))

    def step(x: Any, state: tuple[Any, Any]) -> tuple[Any, Any]:
        h, c = state
        (w_ih, w_hh, b), (g_ih, g_hh, g_c) = params, gains
        a = (F.layer_norm(x @ w_ih.T, (4 * H,)) * g_ih + F.layer_norm(h @ w_hh.T, (4 * H,))
             * g_hh + b)
        i, f, g, o = a.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (H,)) * g_c + bias_c), c

    return step


def _cell_loop(torch: Any, spec: CellSpec, inputs: dict[str, Any],
               shape: tuple[int, int, int, int],
               dtype: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """The variant as users write it in PyTorch today: a step loop in Python over
    torch.nn.LSTMCell (or the layer-normalised step in torch ops), applying the same masks."""
    T, B, I, H = shape
    tdtype = getattr(torch, dtype)
    if spec.options.layer_norm:
        cell = _layer_norm_step(torch, I, H, tdtype)
    else:
        cell = torch.nn.LSTMCell(I, H).to(device="cuda", dtype=tdtype)

    def tensor(a: Any) -> Any:
        return torch.from_dlpack(a).to(tdtype)

    x, dy = tensor(inputs["x"]).requires_grad_(), tensor(inputs["dy"])
    h0, c0 = (tensor(s) for s in inputs["states"])
    masks = {name: tensor(m) for name, m in inputs["masks"].items()}

    def fwd() -> Any:
        h, c, ys = h0, c0, []
        for t in range(T):
            h_in = h * masks["recurrent_mask"] if "recurrent_mask" in masks else h
            h_new, c_new = cell(x[t], (h_in, c))
            if "zoneout_cell" in masks:
                c_new = torch.lerp(c_new, c, masks["zoneout_cell"][t])
            if "zoneout" in masks:
                h_new = torch.lerp(h_new, h, masks["zoneout"][t])
            h, c = h_new, c_new
            ys.append(h)
        return torch.stack(ys)

    def both() -> None:
        fwd().backward(dy)

    return fwd, both


def cases(cells: tuple[str, ...], variants: tuple[str, ...],
          shapes: list) -> list[tuple[str, CellSpec, dict[str, Any], list]]:
    """(variant name, spec, torch keywords, shapes) of every benchmark case: each cell at
    ``shapes``, then each LSTM variant at :data:`VARIANT_SHAPES`."""
    out = [("", cell_spec(cell), {}, shapes) for cell in cells]
    for name in variants:
        ours, theirs = VARIANTS[name]
        out.append((name, cell_spec("lstm", **ours), theirs, VARIANT_SHAPES))
    return out


def run(cells: tuple[str, ...], precisions: tuple[tuple[str, bool | None], ...],
        algos: tuple[str, ...], shapes: list, warmup: int, repeats: int,
        variants: tuple[str, ...] = ()) -> list[dict[str, Any]] | None:
    """Time every combination; None when CuPy / PyTorch / a GPU is missing."""
    found = _imports()
    if found is None:
        return None
    cupy, torch = found
    from cuda_rnn.cuda.persistent import device_limits

    gpu = torch.cuda.get_device_name()
    limits = device_limits()

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
    timers["loop"] = timers["cudnn"]
    rows = []
    for variant, spec, torch_options, case_shapes in cases(cells, variants, shapes):
        cell = spec.cell
        for dtype, tf32 in precisions:
            set_tf32(torch, bool(tf32))
            for shape in case_shapes:
                T, B, I, H = shape
                inputs = _inputs(cupy, spec, dtype, shape, seed=T + B)
                theirs = _cudnn(torch, spec, torch_options, dtype, shape, seed=T + B)
                for algo in algos:
                    try:
                        fwd_algo, bwd_algo, reason = describe_choice(spec, algo, dtype, shape,
                                                                     limits)
                    except ValueError as exc:  # persistent for a variant it does not run
                        print(f"{cell} {variant} {algo}: {exc}", file=sys.stderr)
                        continue
                    ours = _ours(spec, inputs, fwd_algo, bwd_algo)
                    sides = [("ours", ours), ("cudnn", theirs)]
                    if loop_variant(spec):
                        sides.append(("loop", _cell_loop(torch, spec, inputs, shape, dtype)))
                    for index, name in enumerate(("fwd", "fwd_bwd")):
                        ms = {}
                        for side, fns in sides:
                            try:
                                ms[side] = median_ms(fns[index], *timers[side], warmup,
                                                     repeats)
                            except Exception as exc:  # report an unsupported case, go on
                                print(f"{side} {cell} {algo} {dtype} tf32={tf32} {shape} "
                                      f"{name}: {exc}", file=sys.stderr)
                                ms[side] = None
                        ratio = (ms["ours"] / ms["cudnn"]
                                 if ms["ours"] is not None and ms["cudnn"] else None)
                        rows.append(dict(gpu=gpu, cell=cell, algo=algo, dtype=dtype, tf32=tf32,
                                         T=T, B=B, I=I, H=H, variant=variant,
                                         **{"pass": name},
                                         ours_ms=ms["ours"], cudnn_ms=ms["cudnn"],
                                         ratio=ratio, algo_reason=reason))
                        if "loop" in ms:
                            rows[-1].update(loop_ms=ms["loop"], loop_speedup=(
                                ms["loop"] / ms["ours"] if ms["loop"] and ms["ours"] else None))
                        print(format_row(rows[-1]), flush=True)
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_row(row: dict[str, Any]) -> str:
    """One line of the table (the reason follows after a bar)."""
    tf32 = {None: "", False: "tf32-off", True: "tf32-on"}[row["tf32"]]
    cell = f"{row['cell']}-{row['variant']}" if row.get("variant") else row["cell"]
    return (f"{cell:13} {row['algo']:11} {row['dtype']:8} {tf32:8} T={row['T']:<5} "
            f"B={row['B']:<3} I={row['I']:<4} H={row['H']:<4} {row['pass']:7} ours "
            f"{_fmt(row['ours_ms'], '9.3f')} ms  cudnn {_fmt(row['cudnn_ms'], '9.3f')} ms  "
            f"ratio {_fmt(row['ratio'], '6.2f')}"
            + (f"  LSTMCell loop {_fmt(row['loop_ms'], '9.3f')} ms "
               f"({_fmt(row['loop_speedup'], '.1f')}x ours)" if "loop_ms" in row else "")
            + f"  | {row['algo_reason']}")


def precisions_for(dtypes: list[str], tf32: str) -> tuple[tuple[str, bool | None], ...]:
    """The (dtype, TF32) combinations to run for the command-line choices."""
    wanted = TF32_CHOICES[tf32]
    return tuple((d, t) for d, t in PRECISIONS if d in dtypes and (t is None or t in wanted))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--tf32", choices=tuple(TF32_CHOICES), default="both",
                        help="float32 with TF32 disallowed, allowed, or both (default)")
    parser.add_argument("--algos", nargs="+", choices=ALGOS, default=list(ALGOS))
    parser.add_argument("--variants", nargs="*", choices=tuple(VARIANTS),
                        default=list(VARIANTS), help="LSTM variants (none: --variants)")
    parser.add_argument("--quick", action="store_true", help="only the smallest shape")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    rows = run(tuple(args.cells), precisions_for(args.dtypes, args.tf32), tuple(args.algos),
               QUICK_SHAPES if args.quick else SHAPES, args.warmup, args.repeats,
               tuple(args.variants))
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
