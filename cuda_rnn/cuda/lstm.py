"""LSTM forward over a sequence and its BPTT on the GPU: the twin of reference/lstm.py.

Algorithm "alternating": one GEMM projects the input of all steps (Xp = x W_ih^T + b_ih +
b_hh); then per step one GEMM h_{t-1} W_hh^T into a preallocated buffer and one launch of
``lstm_forward_pointwise`` (kernels_cu/lstm.cu). Backward runs per step in reverse one launch
of ``lstm_backward_pointwise`` and one GEMM dh += dG_t W_hh, then three GEMMs over all steps
for dW_ih, dW_hh and dx. The step loops only launch work on buffers allocated before them:
no allocation and no host synchronisation inside, so they can be captured into a CUDA graph.

The other step loops (``algo=``, see :mod:`cuda_rnn.cuda.algo`) replace only the loop; the
input projection before it and the weight GEMMs after it are the same:
- "graph": the same loop captured once per (T, B, H, dtype) into a CUDA graph held by the
  caller's :class:`~cuda_rnn.cuda.graph.GraphCache` and replayed on its static buffers;
  inputs are copied in and outputs copied out, so results are fresh arrays.
- "persistent": one cooperative launch of ``lstm_forward_persistent`` /
  ``lstm_backward_persistent`` (kernels_cu/lstm_persistent.cuh) runs every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..kernels import get_kernel
from ..profiling import nvtx_range
from . import persistent
from .algo import check_step_loop, tf32_allowed
from .blas import GemmPlan
from .common import (
    Dims,
    acc_state,
    backward_gemms,
    check_dy,
    check_inputs,
    contiguous,
    input_projection,
    step_lengths,
    summed_bias,
    time_steps,
)
from .dtypes import acc_dtype, cast, storage_dtype
from .errors import device_errors
from .graph import Buffers, GraphCache, from_buffers, workspace_buffers
from .launch import BLOCK, launch, pointwise_grid
from .workspace import empty

GATES = 4


@dataclass
class LSTMForwardWorkspace:
    """Every buffer the forward step loop touches; allocated once per call."""

    xp: Any  # (T, B, 4H) accumulator dtype: input projection plus both biases
    hp: Any  # (B, 4H) accumulator dtype: this step's h_{t-1} W_hh^T
    h: Any  # (T+1, B, H) storage
    c: Any  # (T+1, B, H) storage
    y: Any  # (T, B, H) storage
    gates: Any  # (T, B, 4H) storage: i, f, g, o after their nonlinearities
    tanh_c: Any  # (T, B, H) storage
    lengths: Any  # (B,) int32

    @classmethod
    def allocate(cls, xp: Any, lengths: Any, dims: Dims) -> LSTMForwardWorkspace:
        """Buffers for one call, around an already computed input projection."""
        T, B, _, H, name = dims
        dt = storage_dtype(name)
        op = "lstm_forward"
        return cls(
            xp=xp,
            hp=empty((B, GATES * H), acc_dtype(name), f"{op} recurrent projection Hp"),
            h=empty((T + 1, B, H), dt, f"{op} hidden states h"),
            c=empty((T + 1, B, H), dt, f"{op} cell states c"),
            y=empty((T, B, H), dt, f"{op} output y"),
            gates=empty((T, B, GATES * H), dt, f"{op} saved gates"),
            tanh_c=empty((T, B, H), dt, f"{op} saved tanh(c)"),
            lengths=lengths,
        )


class LSTMCudaCache(NamedTuple):
    """What :func:`lstm_backward` needs (opaque to the layers)."""

    x: Any
    h: Any
    c: Any
    gates: Any
    tanh_c: Any
    w_ih: Any
    w_hh: Any
    lengths: Any
    has_bias: bool
    dims: Dims


def run_forward_steps(ws: LSTMForwardWorkspace, w_hh: Any, dims: Dims, name: str) -> None:
    """The forward step loop: per step one GEMM and one pointwise launch, nothing else."""
    T, B, _, H, dtype = dims
    kernel = get_kernel("lstm.cu", "lstm_forward_pointwise", dtype)
    what = f"lstm_forward_pointwise<{dtype}> (B={B}, H={H})"
    gemm = GemmPlan(ws.h[0], w_hh, ws.hp, trans_b=True, what="lstm h_{t-1} W_hh^T")
    h_ptr, h_step = ws.h.data.ptr, B * H * ws.h.itemsize
    w_ptr, hp_ptr = w_hh.data.ptr, ws.hp.data.ptr
    grid, block = pointwise_grid(B * H), (BLOCK,)
    b32, h32 = np.int32(B), np.int32(H)
    for t in time_steps(T, name):
        gemm(h_ptr + t * h_step, w_ptr, hp_ptr)
        launch(kernel, grid, block, (ws.xp, ws.hp, ws.h, ws.c, ws.y, ws.gates, ws.tanh_c,
                                     ws.lengths, np.int32(t), b32, h32), what)


def run_forward_persistent(ws: LSTMForwardWorkspace, w_hh: Any,
                           plan: persistent.PersistentPlan) -> None:
    """Every forward step in one cooperative launch (``ws.hp`` is not used)."""
    persistent.lstm_forward_persistent(plan, ws.xp, w_hh, ws.lengths, ws.h, ws.c, ws.gates,
                                       ws.tanh_c, ws.y, tf32_allowed())


def run_forward_graph(graphs: GraphCache, xp: Any, h0: Any, c0: Any, w_hh: Any, lengths: Any,
                      dims: Dims, name: str) -> LSTMForwardWorkspace:
    """The forward step loop replayed from ``graphs``; the returned workspace holds fresh
    copies of the outputs (its ``hp`` is None: the scratch stays with the graph)."""
    T, B, _, H, dtype = dims

    def allocate() -> Buffers:
        op = "lstm_forward graph"
        ws = LSTMForwardWorkspace.allocate(
            empty((T, B, GATES * H), acc_dtype(dtype), f"{op} input projection Xp"),
            empty((B,), np.int32, f"{op} lengths"), dims)
        return workspace_buffers(ws, w_hh=empty((GATES * H, H), storage_dtype(dtype),
                                                f"{op} W_hh"),
                                 h0=ws.h[0], c0=ws.c[0])

    def body(buffers: Buffers) -> None:
        run_forward_steps(from_buffers(LSTMForwardWorkspace, buffers), buffers["w_hh"], dims,
                          name)

    out = graphs.run(("lstm", "forward", T, B, H, dtype), allocate, body,
                     {"xp": xp, "lengths": lengths, "w_hh": w_hh, "h0": h0, "c0": c0},
                     ("h", "c", "y", "gates", "tanh_c"))
    return LSTMForwardWorkspace(xp=xp, hp=None, lengths=lengths, **out)


def lstm_forward(
    x: Any,
    h0: Any,
    c0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    lengths: Any = None,
    *,
    name: str = "cuda_rnn/lstm/forward",
    algo: str = "alternating",
    graphs: GraphCache | None = None,
) -> tuple[Any, Any, Any, LSTMCudaCache]:
    """Run one LSTM layer-direction over a time-major sequence on the GPU.

    Parameters
    ----------
    x : (T, B, I) CuPy array in a storage dtype.
    h0, c0 : (B, H) initial states, same dtype.
    w_ih : (4H, I); w_hh : (4H, H); b_ih, b_hh : (4H,) or None (no bias).
    lengths : (B,) int32 CuPy array with values in [1, T], or None for full length.
    name : NVTX range around the call (per-step ranges ``{name}/t{t}`` when enabled).
    algo : the step loop, "alternating", "graph" or "persistent" (resolve "auto" first with
        :func:`cuda_rnn.cuda.algo.choose_algo`).
    graphs : the caller's graph cache; required by "graph", unused otherwise.

    Returns
    -------
    y : (T, B, H) outputs, zero past each sequence's end (a fresh array).
    h_n, c_n : (B, H) states at each sequence's last valid step (fresh arrays).
    cache : what :func:`lstm_backward` needs.

    Raises
    ------
    ValueError
        For shapes or dtypes that do not fit together, an unknown ``algo``, "graph" without
        ``graphs``, or "persistent" for a shape or dtype it does not fit.
    DeviceMemoryError, KernelLaunchError
        When the GPU runs out of memory or a launch fails; the message names what and shapes.
    """
    check_step_loop(algo, graphs, "lstm")
    dims = check_inputs(x, {"h0": h0, "c0": c0}, w_ih, w_hh, b_ih, b_hh, GATES)
    plan = (persistent.require_plan("lstm", "forward", dims.H, dims.B, dims.dtype)
            if algo == "persistent" else None)
    op = dims.describe("lstm_forward")
    with nvtx_range(name), device_errors(op):
        x, h0, c0, w_ih, w_hh = contiguous(x, h0, c0, w_ih, w_hh)
        xp = input_projection(x, w_ih, summed_bias(b_ih, b_hh), dims, GATES, "lstm_forward")
        lens = step_lengths(lengths, dims)
        if algo == "graph":
            ws = run_forward_graph(graphs, xp, h0, c0, w_hh, lens, dims, name)
        else:
            ws = LSTMForwardWorkspace.allocate(xp, lens, dims)
            ws.h[0] = h0
            ws.c[0] = c0
            if plan is not None:
                run_forward_persistent(ws, w_hh, plan)
            else:
                run_forward_steps(ws, w_hh, dims, name)
        h_n, c_n = ws.h[dims.T].copy(), ws.c[dims.T].copy()
    cache = LSTMCudaCache(x, ws.h, ws.c, ws.gates, ws.tanh_c, w_ih, w_hh, ws.lengths,
                          b_ih is not None, dims)
    return ws.y, h_n, c_n, cache


def run_backward_steps(cache: LSTMCudaCache, dy: Any, dh: Any, dc: Any, dgates: Any,
                       name: str) -> None:
    """The backward step loop: per step (reversed) one pointwise launch and one GEMM."""
    T, B, _, H, dtype = cache.dims
    kernel = get_kernel("lstm.cu", "lstm_backward_pointwise", dtype)
    what = f"lstm_backward_pointwise<{dtype}> (B={B}, H={H})"
    gemm = GemmPlan(dgates[0], cache.w_hh, dh, beta=1.0, what="lstm dh += dG_t W_hh")
    g_ptr, g_step = dgates.data.ptr, B * GATES * H * dgates.itemsize
    w_ptr, dh_ptr = cache.w_hh.data.ptr, dh.data.ptr
    grid, block = pointwise_grid(B * H), (BLOCK,)
    b32, h32 = np.int32(B), np.int32(H)
    for t in time_steps(T, name, reverse=True):
        launch(kernel, grid, block, (cache.gates, cache.c, cache.tanh_c, dy, dh, dc, dgates,
                                     cache.lengths, np.int32(t), b32, h32), what)
        gemm(g_ptr + t * g_step, w_ptr, dh_ptr)


def run_backward_persistent(cache: LSTMCudaCache, dy: Any, dh: Any, dc: Any, dgates: Any,
                            plan: persistent.PersistentPlan) -> None:
    """Every backward step in one cooperative launch; dh, dc are updated in place."""
    persistent.lstm_backward_persistent(plan, cache.w_hh, cache.lengths, cache.gates, cache.c,
                                        cache.tanh_c, dy, dh, dc, dgates, tf32_allowed())


def run_backward_graph(graphs: GraphCache, cache: LSTMCudaCache, dy: Any, dh: Any, dc: Any,
                       name: str) -> tuple[Any, Any, Any]:
    """The backward step loop replayed from ``graphs``: fresh (dgates, dh_0, dc_0)."""
    T, B, _, H, dtype = cache.dims

    def allocate() -> Buffers:
        op = "lstm_backward graph"
        st, acc = storage_dtype(dtype), acc_dtype(dtype)
        return {
            "gates": empty((T, B, GATES * H), st, f"{op} saved gates"),
            "c": empty((T + 1, B, H), st, f"{op} cell states c"),
            "tanh_c": empty((T, B, H), st, f"{op} saved tanh(c)"),
            "w_hh": empty((GATES * H, H), st, f"{op} W_hh"),
            "lengths": empty((B,), np.int32, f"{op} lengths"),
            "dy": empty((T, B, H), st, f"{op} dy"),
            "dh": empty((B, H), acc, f"{op} dh"),
            "dc": empty((B, H), acc, f"{op} dc"),
            "dgates": empty((T, B, GATES * H), st, f"{op} gate gradients dG"),
        }

    def body(buffers: Buffers) -> None:
        static = LSTMCudaCache(x=None, h=None, c=buffers["c"], gates=buffers["gates"],
                               tanh_c=buffers["tanh_c"], w_ih=None, w_hh=buffers["w_hh"],
                               lengths=buffers["lengths"], has_bias=False, dims=cache.dims)
        run_backward_steps(static, buffers["dy"], buffers["dh"], buffers["dc"],
                           buffers["dgates"], name)

    inputs = {"gates": cache.gates, "c": cache.c, "tanh_c": cache.tanh_c, "w_hh": cache.w_hh,
              "lengths": cache.lengths, "dy": dy, "dh": dh, "dc": dc}
    out = graphs.run(("lstm", "backward", T, B, H, dtype), allocate, body, inputs,
                     ("dgates", "dh", "dc"))
    return out["dgates"], out["dh"], out["dc"]


def lstm_backward(
    dy: Any, dh_n: Any, dc_n: Any, cache: LSTMCudaCache, *,
    name: str = "cuda_rnn/lstm/backward",
    algo: str = "alternating",
    graphs: GraphCache | None = None,
) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """Backpropagate through time over the sequence of the matching :func:`lstm_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient with respect to y, in the storage dtype.
    dh_n, dc_n : (B, H) gradients with respect to the final states (None: zeros).
    cache : from :func:`lstm_forward` (whichever ``algo`` ran it).
    name : NVTX range around the call.
    algo, graphs : the step loop and graph cache, as in :func:`lstm_forward`.

    Returns
    -------
    dx : (T, B, I); dh0, dc0 : (B, H); dw_ih : (4H, I); dw_hh : (4H, H);
    db_ih, db_hh : (4H,) (equal), or None without bias. All fresh, in the storage dtype.

    Raises
    ------
    ValueError
        For a dy that does not match the forward, or an ``algo`` that cannot run (see
        :func:`lstm_forward`).
    """
    check_step_loop(algo, graphs, "lstm")
    dims = cache.dims
    T, B, _, H, dtype = dims
    check_dy(dy, dims, cache.x.dtype)
    plan = (persistent.require_plan("lstm", "backward", H, B, dtype)
            if algo == "persistent" else None)
    op = dims.describe("lstm_backward")
    with nvtx_range(name), device_errors(op):
        (dy,) = contiguous(dy)
        dh, dc = acc_state(dh_n, dims), acc_state(dc_n, dims)
        if algo == "graph":
            dgates, dh, dc = run_backward_graph(graphs, cache, dy, dh, dc, name)
        else:
            dgates = empty((T, B, GATES * H), cache.x.dtype, "lstm_backward gate gradients dG")
            if plan is not None:
                run_backward_persistent(cache, dy, dh, dc, dgates, plan)
            else:
                run_backward_steps(cache, dy, dh, dc, dgates, name)
        dx, dw_ih, dw_hh, db_ih, db_hh = backward_gemms(dgates, dgates, cache, "lstm_backward")
        dh0, dc0 = cast(dh, dtype), cast(dc, dtype)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
