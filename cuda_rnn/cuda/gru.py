"""GRU forward over a sequence and its BPTT on the GPU: the twin of reference/gru.py.

The GRU as :mod:`cuda_rnn.cuda.sequence` runs it (:data:`SPEC`): Xp = x W_ih^T + b_ih for all
steps in one GEMM, then per step the GEMM h_{t-1} W_hh^T and ``gru_forward_pointwise``
(kernels_cu/gru.cu), which adds b_hh itself because r multiplies b_hn, writes h_t and y_t and
saves the gates r, z, n and W_hn h_{t-1} + b_hn. Backward per step (reversed)
``gru_backward_pointwise`` and the GEMM dh += dHp_t W_hh; after the loop dW_ih from the
input-side gradients dXp and dW_hh from the recurrent-side dHp. ``algo=`` "graph" replays that
loop from a CUDA graph, "persistent" runs ``gru_forward_persistent`` /
``gru_backward_persistent`` (kernels_cu/gru_persistent.cuh) in one cooperative launch.
"""
from __future__ import annotations

from typing import Any

from ..cellspec import cell_spec
from . import sequence
from .graph import GraphCache

SPEC = cell_spec("gru")


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
    recurrent_mask: Any = None,
    zoneout: Any = None,
) -> tuple[Any, Any, sequence.SequenceCache]:
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
    recurrent_mask : (B, H) recurrent dropout mask (0 or 1 / (1 - p)), same dtype, or None;
        the recurrent GEMM then reads h_{t-1} * mask at every step (not with "persistent").
    zoneout : (T, B, H) zoneout mask of h (1 keeps the previous value: h_t = h_{t-1} + (1 - d)
        (h'_t - h_{t-1})), same dtype, a float (its expectation, eval mode) or None (not with
        "persistent").

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
    y, (h_n,), cache = sequence.forward(SPEC, x, (h0,), w_ih, w_hh, b_ih, b_hh, lengths,
                                        name=name, algo=algo, graphs=graphs,
                                        recurrent_mask=recurrent_mask,
                                        zoneout=sequence.zoneout_arguments(zh=zoneout))
    return y, h_n, cache


def gru_backward(
    dy: Any, dh_n: Any, cache: sequence.SequenceCache, *, name: str = "cuda_rnn/gru/backward",
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
        For a cache that is not a GRU's, a dy that does not match the forward, or an ``algo``
        that cannot run (see :func:`gru_forward`).
    """
    dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh, _ = sequence.backward(
        "gru", dy, (dh_n,), cache, name=name, algo=algo, graphs=graphs)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
