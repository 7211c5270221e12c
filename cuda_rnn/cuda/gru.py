"""GRU forward over a sequence and its BPTT on the GPU: the twin of reference/gru.py.

Algorithm "alternating", as in :mod:`cuda_rnn.cuda.lstm`: one GEMM for Xp = x W_ih^T + b_ih,
then per step one GEMM h_{t-1} W_hh^T and one launch of ``gru_forward_pointwise``
(kernels_cu/gru.cu), which adds b_hh itself because r multiplies b_hn. Backward per step
(reversed) one launch of ``gru_backward_pointwise`` and one GEMM dh += dHp_t W_hh; after the
loop dW_ih from the input-side gradients dXp and dW_hh from the recurrent-side dHp. No
allocation and no host synchronisation inside the step loops.

The other step loops (``algo=``, see :mod:`cuda_rnn.cuda.algo`) replace only the loop, as in
:mod:`cuda_rnn.cuda.lstm`: "graph" replays the captured loop from the caller's
:class:`~cuda_rnn.cuda.graph.GraphCache` (inputs copied in, outputs copied out), and
"persistent" runs ``gru_forward_persistent`` / ``gru_backward_persistent``
(kernels_cu/gru_persistent.cuh) in one cooperative launch.
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
    time_steps,
)
from .dtypes import acc_dtype, cast, storage_dtype, to_acc
from .errors import device_errors
from .graph import Buffers, GraphCache, from_buffers, workspace_buffers
from .launch import BLOCK, launch, pointwise_grid
from .workspace import empty

GATES = 3


@dataclass
class GRUForwardWorkspace:
    """Every buffer the forward step loop touches; allocated once per call."""

    xp: Any  # (T, B, 3H) accumulator dtype: x W_ih^T + b_ih
    hp: Any  # (B, 3H) accumulator dtype: this step's h_{t-1} W_hh^T
    bh: Any  # (3H,) accumulator dtype: b_hh, zeros without bias
    h: Any  # (T+1, B, H) storage
    y: Any  # (T, B, H) storage
    gates: Any  # (T, B, 3H) storage: r, z, n after their nonlinearities
    hn: Any  # (T, B, H) storage: W_hn h_{t-1} + b_hn
    lengths: Any  # (B,) int32

    @classmethod
    def allocate(cls, xp: Any, bh: Any, lengths: Any, dims: Dims) -> GRUForwardWorkspace:
        """Buffers for one call, around an already computed input projection."""
        T, B, _, H, name = dims
        dt = storage_dtype(name)
        op = "gru_forward"
        return cls(
            xp=xp,
            hp=empty((B, GATES * H), acc_dtype(name), f"{op} recurrent projection Hp"),
            bh=bh,
            h=empty((T + 1, B, H), dt, f"{op} hidden states h"),
            y=empty((T, B, H), dt, f"{op} output y"),
            gates=empty((T, B, GATES * H), dt, f"{op} saved gates"),
            hn=empty((T, B, H), dt, f"{op} saved W_hn h + b_hn"),
            lengths=lengths,
        )


class GRUCudaCache(NamedTuple):
    """What :func:`gru_backward` needs (opaque to the layers)."""

    x: Any
    h: Any
    gates: Any
    hn: Any
    w_ih: Any
    w_hh: Any
    lengths: Any
    has_bias: bool
    dims: Dims


def run_forward_steps(ws: GRUForwardWorkspace, w_hh: Any, dims: Dims, name: str) -> None:
    """The forward step loop: per step one GEMM and one pointwise launch, nothing else."""
    T, B, _, H, dtype = dims
    kernel = get_kernel("gru.cu", "gru_forward_pointwise", dtype)
    what = f"gru_forward_pointwise<{dtype}> (B={B}, H={H})"
    gemm = GemmPlan(ws.h[0], w_hh, ws.hp, trans_b=True, what="gru h_{t-1} W_hh^T")
    h_ptr, h_step = ws.h.data.ptr, B * H * ws.h.itemsize
    w_ptr, hp_ptr = w_hh.data.ptr, ws.hp.data.ptr
    grid, block = pointwise_grid(B * H), (BLOCK,)
    b32, h32 = np.int32(B), np.int32(H)
    for t in time_steps(T, name):
        gemm(h_ptr + t * h_step, w_ptr, hp_ptr)
        launch(kernel, grid, block, (ws.xp, ws.hp, ws.bh, ws.h, ws.y, ws.gates, ws.hn,
                                     ws.lengths, np.int32(t), b32, h32), what)


def run_forward_persistent(ws: GRUForwardWorkspace, w_hh: Any,
                           plan: persistent.PersistentPlan) -> None:
    """Every forward step in one cooperative launch (``ws.hp`` is not used)."""
    persistent.gru_forward_persistent(plan, ws.xp, w_hh, ws.bh, ws.lengths, ws.h, ws.gates,
                                      ws.hn, ws.y, tf32_allowed())


def run_forward_graph(graphs: GraphCache, xp: Any, bh: Any, h0: Any, w_hh: Any, lengths: Any,
                      dims: Dims, name: str) -> GRUForwardWorkspace:
    """The forward step loop replayed from ``graphs``; the returned workspace holds fresh
    copies of the outputs (its ``hp`` is None: the scratch stays with the graph)."""
    T, B, _, H, dtype = dims

    def allocate() -> Buffers:
        op = "gru_forward graph"
        acc = acc_dtype(dtype)
        ws = GRUForwardWorkspace.allocate(
            empty((T, B, GATES * H), acc, f"{op} input projection Xp"),
            empty((GATES * H,), acc, f"{op} b_hh"),
            empty((B,), np.int32, f"{op} lengths"), dims)
        return workspace_buffers(ws, w_hh=empty((GATES * H, H), storage_dtype(dtype),
                                                f"{op} W_hh"),
                                 h0=ws.h[0])

    def body(buffers: Buffers) -> None:
        run_forward_steps(from_buffers(GRUForwardWorkspace, buffers), buffers["w_hh"], dims,
                          name)

    out = graphs.run(("gru", "forward", T, B, H, dtype), allocate, body,
                     {"xp": xp, "bh": bh, "lengths": lengths, "w_hh": w_hh, "h0": h0},
                     ("h", "y", "gates", "hn"))
    return GRUForwardWorkspace(xp=xp, hp=None, bh=bh, lengths=lengths, **out)


def gru_forward(
    x: Any,
    h0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    lengths: Any = None,
    *,
    name: str = "cuda_rnn/gru/forward",
    algo: str = "alternating",
    graphs: GraphCache | None = None,
) -> tuple[Any, Any, GRUCudaCache]:
    """Run one GRU layer-direction over a time-major sequence on the GPU.

    Parameters
    ----------
    x : (T, B, I) CuPy array in a storage dtype.
    h0 : (B, H) initial state, same dtype.
    w_ih : (3H, I); w_hh : (3H, H); b_ih, b_hh : (3H,) or None (no bias).
    lengths : (B,) int32 CuPy array with values in [1, T], or None for full length.
    name : NVTX range around the call (per-step ranges ``{name}/t{t}`` when enabled).
    algo : the step loop, "alternating", "graph" or "persistent" (resolve "auto" first with
        :func:`cuda_rnn.cuda.algo.choose_algo`).
    graphs : the caller's graph cache; required by "graph", unused otherwise.

    Returns
    -------
    y : (T, B, H) outputs, zero past each sequence's end (a fresh array).
    h_n : (B, H) state at each sequence's last valid step (a fresh array).
    cache : what :func:`gru_backward` needs.

    Raises
    ------
    ValueError
        For shapes or dtypes that do not fit together, an unknown ``algo``, "graph" without
        ``graphs``, or "persistent" for a shape or dtype it does not fit.
    DeviceMemoryError, KernelLaunchError
        When the GPU runs out of memory or a launch fails; the message names what and shapes.
    """
    check_step_loop(algo, graphs, "gru")
    import cupy

    dims = check_inputs(x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, GATES)
    plan = (persistent.require_plan("gru", "forward", dims.H, dims.B, dims.dtype)
            if algo == "persistent" else None)
    op = dims.describe("gru_forward")
    with nvtx_range(name), device_errors(op):
        x, h0, w_ih, w_hh = contiguous(x, h0, w_ih, w_hh)
        bias_ih = None if b_ih is None else to_acc(b_ih)
        xp = input_projection(x, w_ih, bias_ih, dims, GATES, "gru_forward")
        bh = (cupy.zeros((GATES * dims.H,), acc_dtype(dims.dtype)) if b_hh is None
              else to_acc(b_hh))
        lens = step_lengths(lengths, dims)
        if algo == "graph":
            ws = run_forward_graph(graphs, xp, bh, h0, w_hh, lens, dims, name)
        else:
            ws = GRUForwardWorkspace.allocate(xp, bh, lens, dims)
            ws.h[0] = h0
            if plan is not None:
                run_forward_persistent(ws, w_hh, plan)
            else:
                run_forward_steps(ws, w_hh, dims, name)
        h_n = ws.h[dims.T].copy()
    cache = GRUCudaCache(x, ws.h, ws.gates, ws.hn, w_ih, w_hh, ws.lengths,
                         b_ih is not None, dims)
    return ws.y, h_n, cache


def run_backward_steps(cache: GRUCudaCache, dy: Any, dh: Any, dxp: Any, dhp: Any,
                       name: str) -> None:
    """The backward step loop: per step (reversed) one pointwise launch and one GEMM."""
    T, B, _, H, dtype = cache.dims
    kernel = get_kernel("gru.cu", "gru_backward_pointwise", dtype)
    what = f"gru_backward_pointwise<{dtype}> (B={B}, H={H})"
    gemm = GemmPlan(dhp[0], cache.w_hh, dh, beta=1.0, what="gru dh += dHp_t W_hh")
    g_ptr, g_step = dhp.data.ptr, B * GATES * H * dhp.itemsize
    w_ptr, dh_ptr = cache.w_hh.data.ptr, dh.data.ptr
    grid, block = pointwise_grid(B * H), (BLOCK,)
    b32, h32 = np.int32(B), np.int32(H)
    for t in time_steps(T, name, reverse=True):
        launch(kernel, grid, block, (cache.gates, cache.hn, cache.h, dy, dh, dxp, dhp,
                                     cache.lengths, np.int32(t), b32, h32), what)
        gemm(g_ptr + t * g_step, w_ptr, dh_ptr)


def run_backward_persistent(cache: GRUCudaCache, dy: Any, dh: Any, dxp: Any, dhp: Any,
                            plan: persistent.PersistentPlan) -> None:
    """Every backward step in one cooperative launch; dh is updated in place."""
    persistent.gru_backward_persistent(plan, cache.w_hh, cache.lengths, cache.h, cache.gates,
                                       cache.hn, dy, dh, dxp, dhp, tf32_allowed())


def run_backward_graph(graphs: GraphCache, cache: GRUCudaCache, dy: Any, dh: Any,
                       name: str) -> tuple[Any, Any, Any]:
    """The backward step loop replayed from ``graphs``: fresh (dxp, dhp, dh_0)."""
    T, B, _, H, dtype = cache.dims

    def allocate() -> Buffers:
        op = "gru_backward graph"
        st = storage_dtype(dtype)
        return {
            "gates": empty((T, B, GATES * H), st, f"{op} saved gates"),
            "hn": empty((T, B, H), st, f"{op} saved W_hn h + b_hn"),
            "h": empty((T + 1, B, H), st, f"{op} hidden states h"),
            "w_hh": empty((GATES * H, H), st, f"{op} W_hh"),
            "lengths": empty((B,), np.int32, f"{op} lengths"),
            "dy": empty((T, B, H), st, f"{op} dy"),
            "dh": empty((B, H), acc_dtype(dtype), f"{op} dh"),
            "dxp": empty((T, B, GATES * H), st, f"{op} input-side gradients dXp"),
            "dhp": empty((T, B, GATES * H), st, f"{op} recurrent gradients dHp"),
        }

    def body(buffers: Buffers) -> None:
        static = GRUCudaCache(x=None, h=buffers["h"], gates=buffers["gates"],
                              hn=buffers["hn"], w_ih=None, w_hh=buffers["w_hh"],
                              lengths=buffers["lengths"], has_bias=False, dims=cache.dims)
        run_backward_steps(static, buffers["dy"], buffers["dh"], buffers["dxp"],
                           buffers["dhp"], name)

    inputs = {"gates": cache.gates, "hn": cache.hn, "h": cache.h, "w_hh": cache.w_hh,
              "lengths": cache.lengths, "dy": dy, "dh": dh}
    out = graphs.run(("gru", "backward", T, B, H, dtype), allocate, body, inputs,
                     ("dxp", "dhp", "dh"))
    return out["dxp"], out["dhp"], out["dh"]


def gru_backward(
    dy: Any, dh_n: Any, cache: GRUCudaCache, *, name: str = "cuda_rnn/gru/backward",
    algo: str = "alternating", graphs: GraphCache | None = None,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Backpropagate through time over the sequence of the matching :func:`gru_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient with respect to y, in the storage dtype.
    dh_n : (B, H) gradient with respect to the final state (None: zeros).
    cache : from :func:`gru_forward` (whichever ``algo`` ran it).
    name : NVTX range around the call.
    algo, graphs : the step loop and graph cache, as in :func:`gru_forward`.

    Returns
    -------
    dx : (T, B, I); dh0 : (B, H); dw_ih : (3H, I); dw_hh : (3H, H);
    db_ih, db_hh : (3H,), or None without bias. All fresh, in the storage dtype.

    Raises
    ------
    ValueError
        For a dy that does not match the forward, or an ``algo`` that cannot run (see
        :func:`gru_forward`).
    """
    check_step_loop(algo, graphs, "gru")
    dims = cache.dims
    T, B, _, H, dtype = dims
    check_dy(dy, dims, cache.x.dtype)
    plan = (persistent.require_plan("gru", "backward", H, B, dtype)
            if algo == "persistent" else None)
    op = dims.describe("gru_backward")
    with nvtx_range(name), device_errors(op):
        (dy,) = contiguous(dy)
        dh = acc_state(dh_n, dims)
        if algo == "graph":
            dxp, dhp, dh = run_backward_graph(graphs, cache, dy, dh, name)
        else:
            dxp = empty((T, B, GATES * H), cache.x.dtype,
                        "gru_backward input-side gradients dXp")
            dhp = empty((T, B, GATES * H), cache.x.dtype,
                        "gru_backward recurrent gradients dHp")
            if plan is not None:
                run_backward_persistent(cache, dy, dh, dxp, dhp, plan)
            else:
                run_backward_steps(cache, dy, dh, dxp, dhp, name)
        dx, dw_ih, dw_hh, db_ih, db_hh = backward_gemms(dxp, dhp, cache, "gru_backward")
        dh0 = cast(dh, dtype)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
