"""LSTM forward over a sequence and its exact reverse-time BPTT, in NumPy.

Gates in PyTorch order i, f, g, o, each a block of H columns of the (B, 4H) pre-activation:

    i = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)

Backward, from dh_t and dc_t (the loss's gradients with respect to h_t and c_t through step
t+1; dh_n and dc_n at t = T-1):

    dh = dh_t + dy_t                   dc = dc_t + dh * o * (1 - tanh(c_t)^2)
    da_i = dc * g * i (1 - i)          da_f = dc * c_{t-1} * f (1 - f)
    da_g = dc * i * (1 - g^2)          da_o = dh * tanh(c_t) * o (1 - o)
    dc_{t-1} = dc * f                  dh_{t-1} = da W_hh

The factors after dc and dh_t are local derivatives of step t; they do not depend on the
recursion, so backward computes them for all steps at once and the loop multiplies them in.

With ``lengths``, a sequence past its end keeps its state (h_t = h_{t-1}, c_t = c_{t-1}) and
outputs zeros, so gradients flow only through valid steps (PackedSequence semantics).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .common import add_bias, input_projection, keep_past_end, step_masks, weight_gradients


class LSTMCache(NamedTuple):
    """What backward needs: inputs, every state, post-activation gates and tanh(c_t)."""

    x: np.ndarray  # (T, B, I)
    h: np.ndarray  # (T+1, B, H): h_0 .. h_T (masked states)
    c: np.ndarray  # (T+1, B, H)
    gates: np.ndarray  # (T, B, 4H): i, f, g, o after their nonlinearities
    tanh_c: np.ndarray  # (T, B, H): tanh of the unmasked new cell state
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: np.ndarray | None
    has_bias: bool


def _gate_blocks(gates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Views i, f, g, o of (..., 4H) gate columns, each (..., H)."""
    i, f, g, o = np.split(gates, 4, axis=-1)
    return i, f, g, o


def lstm_forward(
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    lengths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache]:
    """Run one LSTM layer-direction over a time-major sequence.

    Parameters
    ----------
    x : (T, B, I) input.
    h0, c0 : (B, H) initial states.
    w_ih : (4H, I); w_hh : (4H, H); b_ih, b_hh : (4H,) or None.
    lengths : (B,) integers in [1, T], or None for full-length sequences.

    Returns
    -------
    y : (T, B, H) outputs (zero past each sequence's end).
    h_n, c_n : (B, H) states at each sequence's last valid step.
    cache : what :func:`lstm_backward` needs.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    # sigmoid(a) = 0.5 * tanh(a / 2) + 0.5: halving the rows of the sigmoid gates (i, f, o) in
    # the weights and bias (exact in floating point) lets one tanh cover all four gates; then
    # a * scale + shift per column turns tanh into sigmoid on i, f, o and leaves g as it is.
    scale = np.full(4 * H, 0.5, dtype)
    scale[2 * H : 3 * H] = 1.0
    shift = np.full(4 * H, 0.5, dtype)
    shift[2 * H : 3 * H] = 0.0
    bias = add_bias(b_ih, b_hh)
    xp = input_projection(x, w_ih * scale[:, None], None if bias is None else bias * scale)
    w_hh_t = np.ascontiguousarray((w_hh * scale[:, None]).T)
    h = np.empty((T + 1, B, H), dtype)
    c = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, 4 * H), dtype)
    tanh_c = np.empty((T, B, H), dtype)
    ig = np.empty((B, H), dtype)
    h[0], c[0] = h0, c0
    masks = step_masks(lengths, T, dtype)
    y = np.zeros((T, B, H), dtype) if masks is not None else h[1:]
    i, f, g, o = _gate_blocks(gates)
    for t in range(T):
        a = gates[t]
        np.matmul(h[t], w_hh_t, a)
        a += xp[t]
        np.tanh(a, a)
        a *= scale
        a += shift
        c_new, h_new = c[t + 1], h[t + 1]
        np.multiply(f[t], c[t], c_new)
        np.multiply(i[t], g[t], ig)
        c_new += ig
        np.tanh(c_new, tanh_c[t])
        np.multiply(o[t], tanh_c[t], h_new)
        if masks is not None:
            m = masks[t]
            np.multiply(h_new, m, y[t])
            keep_past_end(c_new, c[t], m, c_new)
            keep_past_end(h_new, h[t], m, h_new)
    cache = LSTMCache(x, h, c, gates, tanh_c, w_ih, w_hh, lengths, b_ih is not None)
    return y, h[T].copy(), c[T].copy(), cache


def lstm_backward(
    dy: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray, cache: LSTMCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None,
           np.ndarray | None]:
    """Backpropagate through time over the sequence of the matching :func:`lstm_forward`.

    Parameters
    ----------
    dy : (T, B, H) gradient of the loss with respect to y.
    dh_n, dc_n : (B, H) gradients with respect to the final states.
    cache : from :func:`lstm_forward`.

    Returns
    -------
    dx : (T, B, I); dh0, dc0 : (B, H); dw_ih : (4H, I); dw_hh : (4H, H);
    db_ih, db_hh : (4H,) (equal, since both biases enter the same sum), or None without bias.
    """
    x, h, c, gates, tanh_c, w_ih, w_hh, lengths, has_bias = cache
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    i, f, g, o = _gate_blocks(gates)
    # The local derivatives of every step, stored where da goes: the loop scales the blocks
    # i, f, g by dc and the block o by dh.
    dgates = np.empty_like(gates)
    di, df, dg, do = _gate_blocks(dgates)
    np.multiply(g, i * (1 - i), di)
    np.multiply(c[:-1], f * (1 - f), df)
    np.multiply(i, 1 - g * g, dg)
    np.multiply(tanh_c, o * (1 - o), do)
    dh_dc = o * (1 - tanh_c * tanh_c)
    di_df_dg = dgates.reshape(T, B, 4, H)[:, :, :3]
    masks = step_masks(lengths, T, dtype)
    dh = np.empty((B, H), dtype)
    dc = np.empty((B, H), dtype)
    dc_each_block = dc[:, None]
    dh_t = dh_n.astype(dtype, copy=True)
    dc_t = dc_n.astype(dtype, copy=True)
    for t in range(T - 1, -1, -1):
        np.add(dh_t, dy[t], dh)
        if masks is not None:
            # Past a sequence's end the state was copied through: pass its gradient back as is.
            m = masks[t]
            dh *= m
            dh_keep, dc_keep = dh_t * (1 - m), dc_t * (1 - m)
            dc_t *= m
        np.multiply(dh, dh_dc[t], dc)
        dc += dc_t
        di_df_dg[t] *= dc_each_block
        do[t] *= dh
        np.multiply(dc, f[t], dc_t)
        np.matmul(dgates[t], w_hh, dh_t)
        if masks is not None:
            dh_t += dh_keep
            dc_t += dc_keep
    dw_ih, dw_hh, db = weight_gradients(dgates, x, h[:-1])
    dx = (dgates.reshape(T * B, -1) @ w_ih).reshape(T, B, -1)
    db_ih = db if has_bias else None
    db_hh = db.copy() if has_bias else None
    return dx, dh_t, dc_t, dw_ih, dw_hh, db_ih, db_hh
