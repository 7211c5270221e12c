"""LSTM forward over a sequence and its BPTT on the GPU: the twin of reference/lstm.py.

The LSTM as :mod:`cuda_rnn.cuda.sequence` runs it (:data:`SPEC`): Xp = x W_ih^T + b_ih + b_hh
for all steps in one GEMM, then per step the GEMM h_{t-1} W_hh^T and
``lstm_forward_pointwise`` (kernels_cu/lstm.cu), which writes h_t, c_t, y_t and saves the
gates after their nonlinearities and tanh(c_t); backward per step (reversed)
``lstm_backward_pointwise`` and the GEMM dh += dG_t W_hh, then the weight GEMMs. ``algo=``
"graph" replays that loop from a CUDA graph, "persistent" runs ``lstm_forward_persistent`` /
``lstm_backward_persistent`` (kernels_cu/lstm_persistent.cuh) in one cooperative launch.

The variants of :class:`cuda_rnn.cellspec.Options` (peepholes, the LSTM without a forget gate,
the projection) are template options of the pointwise kernels and run on "alternating" and
"graph"; with a projection each step adds a GEMM h_t = m_t W_hr^T and
``lstm_forward_projection`` (backward ``lstm_backward_projection`` and dm = dh_t W_hr). The
persistent kernels run only the plain cell. Zoneout of h and c is an optional mask argument
of the same kernels (of the projection kernels for h, with a projection). The layer-normalised
LSTM runs ``lstm_forward_layer_norm`` / ``lstm_backward_layer_norm``
(kernels_cu/lstm_layer_norm.cu, a block per batch row) in place of the pointwise kernels,
with the same template options; the normalisation of x W_ih^T and its backward run over all
steps at once (:mod:`cuda_rnn.cuda.layer_norm`).
"""
from __future__ import annotations

from typing import Any

from ..cellspec import CellSpec, cell_spec
from . import layer_norm, sequence
from .blas import matmul_into
from .common import Dims
from .dtypes import cast, to_acc
from .graph import GraphCache
from .workspace import empty

SPEC = cell_spec("lstm")


def variant_spec(w_hr: Any, w_ch: Any, forget_gate: bool, layer_norm: bool = False) -> CellSpec:
    """The spec of the LSTM variant the cell functions' keywords select."""
    return cell_spec("lstm", proj_size=0 if w_hr is None else int(w_hr.shape[0]),
                     peephole=w_ch is not None, forget_gate=forget_gate, layer_norm=layer_norm)


def projection_gradient(dhr: Any, m: Any, dims: Dims) -> Any:
    """dW_hr = sum_t dhr_t^T m_t: one GEMM over all steps (dhr is zero past each end)."""
    T, B, H, P = dims.T, dims.B, dims.H, dims.P
    dw_hr = empty((P, H), m.dtype, "lstm_backward dW_hr")
    matmul_into(dhr.reshape(T * B, P), m.reshape(T * B, H), dw_hr, trans_a=True,
                what="lstm_backward dhr^T m")
    return dw_hr


def new_cell_states(saved: dict[str, Any], spec: CellSpec, dims: Dims) -> Any:
    """c'_t = f_t c_{t-1} + i_t g_t (c_{t-1} + i_t g_t without a forget gate) of every step,
    in the accumulator dtype, from the saved gates and states: the new values before
    zoneout mixes them into c_t."""
    H, c = dims.H, to_acc(saved["c"][: dims.T])
    gates = to_acc(saved["gates"])
    block = {g: gates[:, :, k * H : (k + 1) * H] for k, g in enumerate(spec.gate_names)}
    carried = block["f"] * c if "f" in block else c
    return carried + block["i"] * block["g"]


def peephole_gradient(d_gates: Any, cache: sequence.SequenceCache) -> Any:
    """dw_ch: sum over steps and batch of da_i c_{t-1}, da_f c_{t-1} and da_o c'_t, in the
    order of w_ch, accumulated in the accumulator dtype and rounded once to storage.

    ``d_gates`` is the (T, B, G*H) pre-activation gradient (zero past each sequence's end, so
    the states kept there add nothing); ``cache`` the forward's, whose (T+1, B, H) cell
    states "c" are c'_t unless zoneout mixed them (``cache.zoned`` holds "zc", in training
    or eval mode), when c'_t is recomputed from the saved gates.
    """
    import cupy

    spec, dims, saved = cache.spec, cache.dims, cache.saved
    T, H = dims.T, dims.H
    d, c = to_acc(d_gates), to_acc(saved["c"])
    c_new = new_cell_states(saved, spec, dims) if "zc" in cache.zoned else c[1 : T + 1]
    reads = {"i": c[:T], "f": c[:T], "o": c_new}
    parts = []
    for k, gate in enumerate(spec.gate_names):
        if gate in reads:
            parts.append((d[:, :, k * H : (k + 1) * H] * reads[gate]).sum(axis=(0, 1)))
    return cast(cupy.concatenate(parts), dims.dtype)


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
    w_hr: Any = None,
    w_ch: Any = None,
    forget_gate: bool = True,
    name: str = "cuda_rnn/lstm/forward",
    algo: str = "alternating",
    graphs: GraphCache | None = None,
    recurrent_mask: Any = None,
    zoneout: Any = None,
    zoneout_cell: Any = None,
    ln_ih: Any = None,
    ln_hh: Any = None,
    ln_c: Any = None,
    ln_bc: Any = None,
) -> tuple[Any, Any, Any, sequence.SequenceCache]:
    """Run one LSTM layer-direction over a time-major sequence on the GPU.

    Parameters
    ----------
    x : (T, B, I) CuPy array in a storage dtype.
    h0, c0 : (B, P) and (B, H) initial states, same dtype (P = H without a projection).
    w_ih : (G*H, I); w_hh : (G*H, P); b_ih, b_hh : (G*H,) or None (no bias); G = 4, or 3
        without a forget gate (rows i, g, o).
    lengths : (B,) int32 CuPy array with values in [1, T], or None for full length.
    w_hr : (P, H) projection of proj_size = P, same dtype, or None; then h0, W_hh's columns,
        y and h_n are P wide.
    w_ch : peephole weights [w_ci; w_cf; w_co] ((G-1)*H,), same dtype, or None.
    forget_gate : False for the LSTM without a forget gate, c_t = c_{t-1} + i * g.
    name : NVTX range around the call (per-step ranges ``{name}/t{t}`` when enabled).
    algo : the step loop, "alternating", "graph" or "persistent" (resolve "auto" first with
        :func:`cuda_rnn.cuda.algo.choose_algo`).
    graphs : the caller's graph cache; required by "graph", unused otherwise.
    recurrent_mask : (B, P) recurrent dropout mask (0 or 1 / (1 - p)), same dtype, or None;
        the recurrent GEMM then reads h_{t-1} * mask at every step (not with "persistent").
    zoneout, zoneout_cell : (T, B, P) and (T, B, H) zoneout masks of h and c (1 keeps the
        previous value: c_t = c_{t-1} + (1 - d_c)(c'_t - c_{t-1}), h_t likewise), same dtype,
        floats (their expectations, eval mode) or None (not with "persistent").
    ln_ih, ln_hh : (G*H,); ln_c, ln_bc : (H,): the layer norm's gains and the cell's bias
        (all four or none), same dtype; then Xp = LN(x W_ih^T) ln_ih + b, the recurrent
        product is normalised the same way a step at a time, and h' = o tanh(LN(c') ln_c +
        ln_bc) (kernels_cu/lstm_layer_norm.cu; not with "persistent").

    Returns
    -------
    y : (T, B, P) outputs, zero past each sequence's end (a fresh array; P = H without a
        projection).
    h_n, c_n : (B, P) and (B, H) states at each sequence's last valid step (fresh arrays).
    cache : what :func:`lstm_backward` needs.

    Raises
    ------
    ValueError
        For shapes or dtypes that do not fit together, an unknown ``algo``, "graph" without
        ``graphs``, or "persistent" for a shape, dtype or variant it does not run.
    DeviceMemoryError, KernelLaunchError
        When the GPU runs out of memory or a launch fails; the message names what and shapes.
    """
    norms = {"ln_ih": ln_ih, "ln_hh": ln_hh, "ln_c": ln_c, "ln_bc": ln_bc}
    given = [n for n, v in norms.items() if v is not None]
    if given and len(given) < len(norms):
        raise ValueError(f"ln_ih, ln_hh, ln_c, ln_bc: expected all four or none, got {given}")
    spec = variant_spec(w_hr, w_ch, forget_gate, bool(given))
    y, (h_n, c_n), cache = sequence.forward(spec, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths,
                                            name=name, algo=algo, graphs=graphs,
                                            weights={"w_ch": w_ch, "w_hr": w_hr, **norms},
                                            recurrent_mask=recurrent_mask,
                                            zoneout=sequence.zoneout_arguments(
                                                zh=zoneout, zc=zoneout_cell))
    return y, h_n, c_n, cache


def lstm_backward(
    dy: Any, dh_n: Any, dc_n: Any, cache: sequence.SequenceCache, *,
    name: str = "cuda_rnn/lstm/backward",
    algo: str = "alternating",
    graphs: GraphCache | None = None,
) -> tuple[Any, Any, Any, Any, Any, Any, Any]:
    """Backpropagate through time over the sequence of the matching :func:`lstm_forward`.

    Parameters
    ----------
    dy : (T, B, P) gradient with respect to y, in the storage dtype (P = H without a
        projection).
    dh_n, dc_n : (B, P) and (B, H) gradients with respect to the final states (None: zeros).
    cache : from :func:`lstm_forward` (whichever ``algo`` ran it).
    name : NVTX range around the call.
    algo, graphs : the step loop and graph cache, as in :func:`lstm_forward`.

    Returns
    -------
    dx : (T, B, I); dh0, dc0 : (B, H); dw_ih : (G*H, I); dw_hh : (G*H, H);
    db_ih, db_hh : (G*H,) (equal), or None without bias; then dw_hr (P, H) when the forward
    had a projection (dh0, dw_hh then P wide), dw_ch ((G-1)*H,) when it had peepholes, and
    the gradients of ln_ih, ln_hh, ln_c, ln_bc with the layer norm. All fresh, in the storage
    dtype.

    Raises
    ------
    ValueError
        For a cache that is not an LSTM's, a dy that does not match the forward, or an
        ``algo`` that cannot run (see :func:`lstm_forward`).
    """
    spec = cache.spec
    dx, (dh0, dc0), dw_ih, dw_hh, db_ih, db_hh, loop = sequence.backward(
        "lstm", dy, (dh_n, dc_n), cache, name=name, algo=algo, graphs=graphs)
    grads = (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)
    if spec.projected:
        grads += (projection_gradient(loop["dhr"], cache.saved["m"], cache.dims),)
    if spec.options.peephole:
        grads += (peephole_gradient(loop["dgates"], cache),)
    if spec.options.layer_norm:
        grads += layer_norm.parameter_gradients(loop, cache.saved, cache.dims.dtype)
    return grads
