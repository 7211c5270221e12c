"""Vanilla RNN forward over a sequence and its BPTT on the GPU: the twin of reference/rnn.py.

The RNN as :mod:`cuda_rnn.cuda.sequence` runs it (:data:`SPECS`, one per nonlinearity): Xp =
x W_ih^T + b_ih + b_hh for all steps in one GEMM, then per step the GEMM h_{t-1} W_hh^T and
``rnn_forward_pointwise`` (kernels_cu/rnn.cu), which saves the unmasked new state; backward
per step (reversed) ``rnn_backward_pointwise`` and the GEMM dh += dA_t W_hh, then the weight
GEMMs. ``algo="graph"`` replays that loop from a CUDA graph. There is no persistent kernel
for the vanilla RNN.
"""
from __future__ import annotations

from typing import Any

from ..cellspec import NONLINEARITIES, CellSpec, cell_spec
from . import sequence
from .graph import GraphCache

SPECS: dict[str, CellSpec] = {n: cell_spec("rnn", nonlinearity=n) for n in NONLINEARITIES}


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
    recurrent_mask: Any = None,
    zoneout: Any = None,
) -> tuple[Any, Any, sequence.SequenceCache]:
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
    recurrent_mask : (B, H) recurrent dropout mask (0 or 1 / (1 - p)), same dtype, or None;
        the recurrent GEMM then reads h_{t-1} * mask at every step (not with "persistent").
    zoneout : (T, B, H) zoneout mask of h (1 keeps the previous value: h_t = h_{t-1} + (1 - d)
        (h'_t - h_{t-1})), same dtype, a float (its expectation, eval mode) or None.

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
            f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}"
        )
    y, (h_n,), cache = sequence.forward(SPECS[nonlinearity], x, (h0,), w_ih, w_hh, b_ih, b_hh,
                                        lengths, name=name, algo=algo, graphs=graphs,
                                        recurrent_mask=recurrent_mask,
                                        zoneout=sequence.zoneout_arguments(zh=zoneout))
    return y, h_n, cache


def rnn_backward(
    dy: Any, dh_n: Any, cache: sequence.SequenceCache, *, name: str = "cuda_rnn/rnn/backward",
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
        For a cache that is not a vanilla RNN's, a dy that does not match the forward, or an
        ``algo`` that cannot run (see :func:`rnn_forward`).
    """
    dx, (dh0,), dw_ih, dw_hh, db_ih, db_hh, _ = sequence.backward(
        "rnn", dy, (dh_n,), cache, name=name, algo=algo, graphs=graphs)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
