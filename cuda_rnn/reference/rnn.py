"""Vanilla (Elman) RNN forward over a sequence and its exact reverse-time BPTT, in NumPy.

    h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),   act in {tanh, relu, sigmoid}

Backward, from dh_t (the loss's gradient with respect to h_t through step t+1; dh_n at
t = T-1):

    dh = dh_t + dy_t        da = dh * act'(a_t)        dh_{t-1} = da W_hh

The derivative of each activation is computed from its output: tanh' = 1 - h^2,
relu' = [h > 0], sigmoid' = h (1 - h); it does not depend on the recursion, so backward computes
it for all steps at once. With ``lengths``, a sequence past its end keeps its state and outputs
zeros.

Regularisers (their masks drawn by the caller): zoneout d (1 keeps the previous value, or its
expectation p) gives h_t = d * h_{t-1} + (1 - d) * h'_t, y_t = h_t; a recurrent dropout mask
m of shape (B, H), the same at every step, scales the recurrent product's input:
h'_t = act(... + (h_{t-1} * m) W_hh^T + ...), so dh_{t-1} gets (da W_hh) * m and
dW_hh = sum_t da_t^T (h_{t-1} * m).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .common import (
    add_bias,
    input_projection,
    keep_past_end,
    sigmoid,
    split_state_gradient,
    step_masks,
    update_weights,
    weight_gradients,
)

NONLINEARITIES = ("tanh", "relu", "sigmoid")


class RNNCache(NamedTuple):
    """What backward needs: inputs, every state and each step's unmasked new state."""

    x: np.ndarray  # (T, B, I)
    h: np.ndarray  # (T+1, B, H): h_0 .. h_T (masked states)
    act: np.ndarray  # (T, B, H): act(a_t) before masking
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: np.ndarray | None
    has_bias: bool
    nonlinearity: str
    zoneout: np.ndarray | float | None
    recurrent_mask: np.ndarray | None


def _activate(a: np.ndarray, nonlinearity: str) -> None:
    if nonlinearity == "tanh":
        np.tanh(a, out=a)
    elif nonlinearity == "relu":
        np.maximum(a, 0, out=a)
    else:
        sigmoid(a, out=a)


def _derivative(out: np.ndarray, nonlinearity: str) -> np.ndarray:
    if nonlinearity == "tanh":
        return 1 - out * out
    if nonlinearity == "relu":
        return (out > 0).astype(out.dtype)
    return out * (1 - out)


def rnn_forward(
    x: np.ndarray,
    h0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    lengths: np.ndarray | None = None,
    nonlinearity: str = "tanh",
    *,
    zoneout: np.ndarray | float | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, RNNCache]:
    """Run one vanilla RNN layer-direction over a time-major sequence.

    Parameters
    ----------
    x : (T, B, I) input.
    h0 : (B, H) initial state.
    w_ih : (H, I); w_hh : (H, H); b_ih, b_hh : (H,) or None.
    lengths : (B,) integers in [1, T], or None for full-length sequences.
    nonlinearity : "tanh", "relu" or "sigmoid".
    zoneout : (T, B, H) zoneout masks (1 keeps the previous value), a float (their
        expectation, eval mode), or None.
    recurrent_mask : (B, H) recurrent dropout mask, or None.

    Returns
    -------
    y : (T, B, H); h_n : (B, H); cache : what :func:`rnn_backward` needs.
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity: expected one of {NONLINEARITIES}, got {nonlinearity!r}")
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    xp = input_projection(x, w_ih, add_bias(b_ih, b_hh))
    h = np.empty((T + 1, B, H), dtype)
    h[0] = h0
    valid = step_masks(lengths, T, dtype)
    take = update_weights(valid, zoneout, (T, B, H), dtype)
    # When every new state is kept as computed, act is h_1 .. h_T itself.
    act = np.empty((T, B, H), dtype) if take is not None else h[1:]
    y = np.zeros((T, B, H), dtype) if valid is not None else h[1:]
    w_hh_t = w_hh.T
    h_in = None if recurrent_mask is None else np.empty((B, H), dtype)
    for t in range(T):
        a = act[t]
        if h_in is None:
            np.matmul(h[t], w_hh_t, a)
        else:
            np.multiply(h[t], recurrent_mask, h_in)
            np.matmul(h_in, w_hh_t, a)
        a += xp[t]
        _activate(a, nonlinearity)
        if take is not None:
            keep_past_end(a, h[t], take[t], h[t + 1])
            if valid is not None:
                np.multiply(h[t + 1], valid[t], y[t])
    cache = RNNCache(x, h, act, w_ih, w_hh, lengths, b_ih is not None, nonlinearity, zoneout,
                     recurrent_mask)
    return y, h[T].copy(), cache


def rnn_backward(
    dy: np.ndarray, dh_n: np.ndarray, cache: RNNCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backpropagate through time over the sequence of the matching :func:`rnn_forward`.

    Returns
    -------
    dx : (T, B, I); dh0 : (B, H); dw_ih : (H, I); dw_hh : (H, H);
    db_ih, db_hh : (H,), or None without bias.
    """
    x, h, act, w_ih, w_hh, lengths, has_bias, nonlinearity, zoneout, rec = cache
    T, B, _ = x.shape
    dtype = x.dtype
    da = _derivative(act, nonlinearity)  # the loop multiplies dh in
    valid = step_masks(lengths, T, dtype)
    take = update_weights(valid, zoneout, act.shape, dtype)
    dh = np.empty(dh_n.shape, dtype)
    dh_t = dh_n.astype(dtype, copy=True)
    for t in range(T - 1, -1, -1):
        dh_keep = split_state_gradient(dh_t, dy[t], valid, take, t, dh)
        da[t] *= dh
        np.matmul(da[t], w_hh, dh_t)
        if rec is not None:
            dh_t *= rec
        if dh_keep is not None:
            dh_t += dh_keep
    dw_ih, dw_hh, db = weight_gradients(da, x, h[:-1] if rec is None else h[:-1] * rec)
    dx = (da.reshape(T * B, -1) @ w_ih).reshape(T, B, -1)
    db_ih = db if has_bias else None
    db_hh = db.copy() if has_bias else None
    return dx, dh_t, dw_ih, dw_hh, db_ih, db_hh
