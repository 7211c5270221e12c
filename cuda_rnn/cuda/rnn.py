"""Vanilla RNN forward over a sequence and its BPTT on the GPU: the twin of reference/rnn.py.

Algorithm "alternating", as in :mod:`cuda_rnn.cuda.lstm`: one GEMM for Xp = x W_ih^T + b_ih +
b_hh, then per step one GEMM h_{t-1} W_hh^T and one launch of ``rnn_forward_pointwise``
(kernels_cu/rnn.cu); backward per step (reversed) one launch of ``rnn_backward_pointwise`` and
one GEMM dh += dA_t W_hh, then the weight-gradient GEMMs. No allocation and no host
synchronisation inside the step loops.

``algo="graph"`` replays the same loops from the caller's
:class:`~cuda_rnn.cuda.graph.GraphCache` (inputs copied in, outputs copied out), as in
:mod:`cuda_rnn.cuda.lstm`. There is no persistent kernel for the vanilla RNN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..kernels import get_kernel
from ..profiling import nvtx_range
from .algo import check_step_loop
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

#: The kernels' code for each nonlinearity (enum Nonlinearity in rnn.cu).
NONLINEARITIES: dict[str, int] = {"tanh": 0, "relu": 1, "sigmoid": 2}


@dataclass
class RNNForwardWorkspace:
    """Every buffer the forward step loop touches; allocated once per call."""

    xp: Any  # (T, B, H) accumulator dtype: input projection plus both biases
    hp: Any  # (B, H) accumulator dtype: this step's h_{t-1} W_hh^T
    h: Any  # (T+1, B, H) storage
    y: Any  # (T, B, H) storage
    act: Any  # (T, B, H) storage: the unmasked new state of each step
    lengths: Any  # (B,) int32

    @classmethod
    def allocate(cls, xp: Any, lengths: Any, dims: Dims) -> RNNForwardWorkspace:
        """Buffers for one call, around an already computed input projection."""
        T, B, _, H, name = dims
        dt = storage_dtype(name)
        op = "rnn_forward"
        return cls(
            xp=xp,
            hp=empty((B, H), acc_dtype(name), f"{op} recurrent projection Hp"),
            h=empty((T + 1, B, H), dt, f"{op} hidden states h"),
            y=empty((T, B, H), dt, f"{op} output y"),
            act=empty((T, B, H), dt, f"{op} saved activations"),
            lengths=lengths,
        )


class RNNCudaCache(NamedTuple):
    """What :func:`rnn_backward` needs (opaque to the layers)."""

    x: Any
    h: Any
    act: Any
    w_ih: Any
    w_hh: Any
    lengths: Any
    has_bias: bool
    nonlinearity: str
    dims: Dims


def run_forward_steps(ws: RNNForwardWorkspace, w_hh: Any, dims: Dims, nonlinearity: str,
                      name: str) -> None:
    """The forward step loop: per step one GEMM and one pointwise launch, nothing else."""
    T, B, _, H, dtype = dims
    kernel = get_kernel("rnn.cu", "rnn_forward_pointwise", dtype)
    what = f"rnn_forward_pointwise<{dtype}> (B={B}, H={H}, {nonlinearity})"
    gemm = GemmPlan(ws.h[0], w_hh, ws.hp, trans_b=True, what="rnn h_{t-1} W_hh^T")
    h_ptr, h_step = ws.h.data.ptr, B * H * ws.h.itemsize
    w_ptr, hp_ptr = w_hh.data.ptr, ws.hp.data.ptr
    grid, block = pointwise_grid(B * H), (BLOCK,)
    b32, h32, act = np.int32(B), np.int32(H), np.int32(NONLINEARITIES[nonlinearity])
    for t in time_steps(T, name):
        gemm(h_ptr + t * h_step, w_ptr, hp_ptr)
        launch(kernel, grid, block, (ws.xp, ws.hp, ws.h, ws.y, ws.act, ws.lengths,
                                     np.int32(t), b32, h32, act), what)


def run_forward_graph(graphs: GraphCache, xp: Any, h0: Any, w_hh: Any, lengths: Any,
                      dims: Dims, nonlinearity: str, name: str) -> RNNForwardWorkspace:
    """The forward step loop replayed from ``graphs``; the returned workspace holds fresh
    copies of the outputs (its ``hp`` is None: the scratch stays with the graph)."""
    T, B, _, H, dtype = dims

    def allocate() -> Buffers:
        op = "rnn_forward graph"
        ws = RNNForwardWorkspace.allocate(
            empty((T, B, H), acc_dtype(dtype), f"{op} input projection Xp"),
            empty((B,), np.int32, f"{op} lengths"), dims)
        return workspace_buffers(ws, w_hh=empty((H, H), storage_dtype(dtype), f"{op} W_hh"),
                                 h0=ws.h[0])

    def body(buffers: Buffers) -> None:
        run_forward_steps(from_buffers(RNNForwardWorkspace, buffers), buffers["w_hh"], dims,
                          nonlinearity, name)

    out = graphs.run(("rnn", "forward", nonlinearity, T, B, H, dtype), allocate, body,
                     {"xp": xp, "lengths": lengths, "w_hh": w_hh, "h0": h0},
                     ("h", "y", "act"))
    return RNNForwardWorkspace(xp=xp, hp=None, lengths=lengths, **out)


def rnn_forward(
    x: Any,
    h0: Any,
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    lengths: Any = None,
    nonlinearity: str = "tanh",
    *,
    name: str = "cuda_rnn/rnn/forward",
    algo: str = "alternating",
    graphs: GraphCache | None = None,
) -> tuple[Any, Any, RNNCudaCache]:
    """Run one vanilla RNN layer-direction over a time-major sequence on the GPU.

    Parameters
    ----------
    x : (T, B, I) CuPy array in a storage dtype.
    h0 : (B, H) initial state, same dtype.
    w_ih : (H, I); w_hh : (H, H); b_ih, b_hh : (H,) or None (no bias).
    lengths : (B,) int32 CuPy array with values in [1, T], or None for full length.
    nonlinearity : "tanh", "relu" or "sigmoid".
    name : NVTX range around the call (per-step ranges ``{name}/t{t}`` when enabled).
    algo : the step loop, "alternating" or "graph" (resolve "auto" first with
        :func:`cuda_rnn.cuda.algo.choose_algo`, which never picks "persistent" for the RNN).
    graphs : the caller's graph cache; required by "graph", unused otherwise.

    Returns
    -------
    y : (T, B, H) outputs, zero past each sequence's end (a fresh array).
    h_n : (B, H) state at each sequence's last valid step (a fresh array).
    cache : what :func:`rnn_backward` needs.

    Raises
    ------
    ValueError
        For an unknown nonlinearity, shapes or dtypes that do not fit together, an unknown
        ``algo`` or "persistent", or "graph" without ``graphs``.
    DeviceMemoryError, KernelLaunchError
        When the GPU runs out of memory or a launch fails; the message names what and shapes.
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"nonlinearity: expected one of {tuple(NONLINEARITIES)}, got {nonlinearity!r}"
        )
    check_step_loop(algo, graphs, "rnn")
    dims = check_inputs(x, {"h0": h0}, w_ih, w_hh, b_ih, b_hh, 1)
    op = dims.describe("rnn_forward")
    with nvtx_range(name), device_errors(op):
        x, h0, w_ih, w_hh = contiguous(x, h0, w_ih, w_hh)
        xp = input_projection(x, w_ih, summed_bias(b_ih, b_hh), dims, 1, "rnn_forward")
        lens = step_lengths(lengths, dims)
        if algo == "graph":
            ws = run_forward_graph(graphs, xp, h0, w_hh, lens, dims, nonlinearity, name)
        else:
            ws = RNNForwardWorkspace.allocate(xp, lens, dims)
            ws.h[0] = h0
            run_forward_steps(ws, w_hh, dims, nonlinearity, name)
        h_n = ws.h[dims.T].copy()
    cache = RNNCudaCache(x, ws.h, ws.act, w_ih, w_hh, ws.lengths, b_ih is not None,
                         nonlinearity, dims)
    return ws.y, h_n, cache


def run_backward_steps(cache: RNNCudaCache, dy: Any, dh: Any, da: Any, name: str) -> None:
    """The backward step loop: per step (reversed) one pointwise launch and one GEMM."""
    T, B, _, H, dtype = cache.dims
    kernel = get_kernel("rnn.cu", "rnn_backward_pointwise", dtype)
    what = f"rnn_backward_pointwise<{dtype}> (B={B}, H={H}, {cache.nonlinearity})"
    gemm = GemmPlan(da[0], cache.w_hh, dh, beta=1.0, what="rnn dh += dA_t W_hh")
    a_ptr, a_step = da.data.ptr, B * H * da.itemsize
    w_ptr, dh_ptr = cache.w_hh.data.ptr, dh.data.ptr
    grid, block = pointwise_grid(B * H), (BLOCK,)
    b32, h32 = np.int32(B), np.int32(H)
    act = np.int32(NONLINEARITIES[cache.nonlinearity])
    for t in time_steps(T, name, reverse=True):
        launch(kernel, grid, block, (cache.act, dy, dh, da, cache.lengths, np.int32(t),
                                     b32, h32, act), what)
        gemm(a_ptr + t * a_step, w_ptr, dh_ptr)


def run_backward_graph(graphs: GraphCache, cache: RNNCudaCache, dy: Any, dh: Any,
                       name: str) -> tuple[Any, Any]:
    """The backward step loop replayed from ``graphs``: fresh (da, dh_0)."""
    T, B, _, H, dtype = cache.dims

    def allocate() -> Buffers:
        op = "rnn_backward graph"
        st = storage_dtype(dtype)
        return {
            "act": empty((T, B, H), st, f"{op} saved activations"),
            "w_hh": empty((H, H), st, f"{op} W_hh"),
            "lengths": empty((B,), np.int32, f"{op} lengths"),
            "dy": empty((T, B, H), st, f"{op} dy"),
            "dh": empty((B, H), acc_dtype(dtype), f"{op} dh"),
            "da": empty((T, B, H), st, f"{op} pre-activation gradients dA"),
        }

    def body(buffers: Buffers) -> None:
        static = RNNCudaCache(x=None, h=None, act=buffers["act"], w_ih=None,
                              w_hh=buffers["w_hh"], lengths=buffers["lengths"],
                              has_bias=False, nonlinearity=cache.nonlinearity,
                              dims=cache.dims)
        run_backward_steps(static, buffers["dy"], buffers["dh"], buffers["da"], name)

    inputs = {"act": cache.act, "w_hh": cache.w_hh, "lengths": cache.lengths, "dy": dy,
              "dh": dh}
    out = graphs.run(("rnn", "backward", cache.nonlinearity, T, B, H, dtype), allocate, body,
                     inputs, ("da", "dh"))
    return out["da"], out["dh"]


def rnn_backward(
    dy: Any, dh_n: Any, cache: RNNCudaCache, *, name: str = "cuda_rnn/rnn/backward",
    algo: str = "alternating", graphs: GraphCache | None = None,
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Backpropagate through time over the sequence of the matching :func:`rnn_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient with respect to y, in the storage dtype.
    dh_n : (B, H) gradient with respect to the final state (None: zeros).
    cache : from :func:`rnn_forward` (whichever ``algo`` ran it).
    name : NVTX range around the call.
    algo, graphs : the step loop and graph cache, as in :func:`rnn_forward`.

    Returns
    -------
    dx : (T, B, I); dh0 : (B, H); dw_ih : (H, I); dw_hh : (H, H);
    db_ih, db_hh : (H,) (equal), or None without bias. All fresh, in the storage dtype.

    Raises
    ------
    ValueError
        For a dy that does not match the forward, or an ``algo`` that cannot run (see
        :func:`rnn_forward`).
    """
    check_step_loop(algo, graphs, "rnn")
    dims = cache.dims
    T, B, _, H, dtype = dims
    check_dy(dy, dims, cache.x.dtype)
    op = dims.describe("rnn_backward")
    with nvtx_range(name), device_errors(op):
        (dy,) = contiguous(dy)
        dh = acc_state(dh_n, dims)
        if algo == "graph":
            da, dh = run_backward_graph(graphs, cache, dy, dh, name)
        else:
            da = empty((T, B, H), cache.x.dtype, "rnn_backward pre-activation gradients dA")
            run_backward_steps(cache, dy, dh, da, name)
        dx, dw_ih, dw_hh, db_ih, db_hh = backward_gemms(da, da, cache, "rnn_backward")
        dh0 = cast(dh, dtype)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
