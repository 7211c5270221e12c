"""LSTM forward over a sequence and its BPTT on the GPU: the twin of reference/lstm.py.

The LSTM as :mod:`cuda_rnn.cuda.sequence` runs it (:data:`SPEC`): Xp = x W_ih^T + b_ih + b_hh
for all steps in one GEMM, then per step the GEMM h_{t-1} W_hh^T and
``lstm_forward_pointwise`` (kernels_cu/lstm.cu), which writes h_t, c_t, y_t and saves the
gates after their nonlinearities and tanh(c_t); backward per step (reversed)
``lstm_backward_pointwise`` and the GEMM dh += dG_t W_hh, then the weight GEMMs. ``algo=``
"graph" replays that loop from a CUDA graph, "persistent" runs ``lstm_forward_persistent`` /
``lstm_backward_persistent`` (kernels_cu/lstm_persistent.cuh) in one cooperative launch.
"""
from __future__ import annotations

from typing import Any

from ..cellspec import cell_spec
from . import sequence
from .graph import GraphCache

SPEC = cell_spec("lstm")


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
) -> tuple[Any, Any, Any, sequence.SequenceCache]:
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
    y, (h_n, c_n), cache = sequence.forward(SPEC, x, (h0, c0), w_ih, w_hh, b_ih, b_hh, lengths,
                                            name=name, algo=algo, graphs=graphs)
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
        For a cache that is not an LSTM's, a dy that does not match the forward, or an
        ``algo`` that cannot run (see :func:`lstm_forward`).
    """
    dx, (dh0, dc0), dw_ih, dw_hh, db_ih, db_hh = sequence.backward(
        "lstm", dy, (dh_n, dc_n), cache, name=name, algo=algo, graphs=graphs)
    return dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh
