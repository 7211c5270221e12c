"""LSTM forward over a sequence and its exact reverse-time BPTT, in NumPy.

Gates in PyTorch order i, f, g, o, each a block of H columns of the (B, 4H) pre-activation:

    i = sigmoid(a_i)   f = sigmoid(a_f)   g = tanh(a_g)   o = sigmoid(a_o)
    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    c_t = f * c_{t-1} + i * g          h_t = o * tanh(c_t)

With ``lengths``, a sequence past its end keeps its state (h_t = h_{t-1}, c_t = c_{t-1}) and
outputs zeros, so gradients flow only through valid steps (PackedSequence semantics).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .common import add_bias, input_projection, step_mask, weight_gradients


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
    # the weights and bias (exact in floating point) lets one tanh cover all four gates.
    scale = np.full(4 * H, 0.5, dtype)
    scale[2 * H : 3 * H] = 1.0
    bias = add_bias(b_ih, b_hh)
    xp = input_projection(x, w_ih * scale[:, None], None if bias is None else bias * scale)
    w_hh_t = np.ascontiguousarray((w_hh * scale[:, None]).T)
    h = np.empty((T + 1, B, H), dtype)
    c = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, 4 * H), dtype)
    tanh_c = np.empty((T, B, H), dtype)
    ig = np.empty((B, H), dtype)
    h[0], c[0] = h0, c0
    y = np.zeros((T, B, H), dtype) if lengths is not None else h[1:]
    for t in range(T):
        a = gates[t]
        np.matmul(h[t], w_hh_t, out=a)
        a += xp[t]
        np.tanh(a, out=a)
        for sig in (a[:, : 2 * H], a[:, 3 * H :]):
            sig *= 0.5
            sig += 0.5
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        c_new, h_new = c[t + 1], h[t + 1]
        np.multiply(f, c[t], out=c_new)
        np.multiply(i, g, out=ig)
        c_new += ig
        np.tanh(c_new, out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h_new)
        m = step_mask(lengths, t, dtype)
        if m is not None:
            y[t] = h_new * m
            c_new -= c[t]
            c_new *= m
            c_new += c[t]
            h_new -= h[t]
            h_new *= m
            h_new += h[t]
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
    dgates = np.empty_like(gates)
    dh = dh_n.astype(dtype, copy=True)
    dc = dc_n.astype(dtype, copy=True)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        m = step_mask(lengths, t, dtype)
        dh_new = dh + dy[t]
        dc_new = dc
        if m is not None:
            # Past a sequence's end the state was copied through: pass its gradient back as is.
            dh_new *= m
            dc_new = dc * m
            dh_keep, dc_keep = dh * (1 - m), dc * (1 - m)
        tc = tanh_c[t]
        dc_new = dc_new + dh_new * o * (1 - tc * tc)
        dgt = dgates[t]
        di, df, dg, do = (dgt[:, k * H : (k + 1) * H] for k in range(4))
        np.multiply(dc_new, g * i * (1 - i), out=di)
        np.multiply(dc_new, c[t] * f * (1 - f), out=df)
        np.multiply(dc_new, i * (1 - g * g), out=dg)
        np.multiply(dh_new, tc * o * (1 - o), out=do)
        dc = dc_new * f
        dh = dgt @ w_hh
        if m is not None:
            dh += dh_keep
            dc += dc_keep
    dw_ih, dw_hh, db = weight_gradients(dgates, x, h[:-1])
    dx = (dgates.reshape(T * B, -1) @ w_ih).reshape(T, B, -1)
    db_ih = db if has_bias else None
    db_hh = db.copy() if has_bias else None
    return dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh
