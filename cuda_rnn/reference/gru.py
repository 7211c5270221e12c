"""GRU forward over a sequence and its exact reverse-time BPTT, in NumPy.

Gates in PyTorch order r, z, n, each a block of H columns:

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

Because r multiplies the recurrent part of n only, the gradients with respect to the input
projection (dXp) and to the recurrent projection (dHp) differ in their n block: dHp_n = r * dXp_n.
With ``lengths``, a sequence past its end keeps its state and outputs zeros.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .common import input_projection, sigmoid, step_mask


class GRUCache(NamedTuple):
    """What backward needs: inputs, every state, gates r, z, n and the recurrent n pre-term."""

    x: np.ndarray  # (T, B, I)
    h: np.ndarray  # (T+1, B, H): h_0 .. h_T (masked states)
    gates: np.ndarray  # (T, B, 3H): r, z, n after their nonlinearities
    hn: np.ndarray  # (T, B, H): W_hn h_{t-1} + b_hn
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: np.ndarray | None
    has_bias: bool


def gru_forward(
    x: np.ndarray,
    h0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    lengths: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, GRUCache]:
    """Run one GRU layer-direction over a time-major sequence.

    Parameters
    ----------
    x : (T, B, I) input.
    h0 : (B, H) initial state.
    w_ih : (3H, I); w_hh : (3H, H); b_ih, b_hh : (3H,) or None.
    lengths : (B,) integers in [1, T], or None for full-length sequences.

    Returns
    -------
    y : (T, B, H) outputs (zero past each sequence's end).
    h_n : (B, H) state at each sequence's last valid step.
    cache : what :func:`gru_backward` needs.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    xp = input_projection(x, w_ih, b_ih)
    h = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, 3 * H), dtype)
    hn = np.empty((T, B, H), dtype)
    h[0] = h0
    w_hh_t = w_hh.T
    hp = np.empty((B, 3 * H), dtype)
    y = np.zeros((T, B, H), dtype) if lengths is not None else h[1:]
    for t in range(T):
        np.matmul(h[t], w_hh_t, out=hp)
        if b_hh is not None:
            hp += b_hh
        a = gates[t]
        np.add(xp[t, :, : 2 * H], hp[:, : 2 * H], out=a[:, : 2 * H])
        sigmoid(a[:, : 2 * H], out=a[:, : 2 * H])
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        hn[t] = hp[:, 2 * H :]
        np.multiply(r, hn[t], out=n)
        n += xp[t, :, 2 * H :]
        np.tanh(n, out=n)
        h_new = n + z * (h[t] - n)
        m = step_mask(lengths, t, dtype)
        if m is None:
            h[t + 1] = h_new
        else:
            y[t] = h_new * m
            h[t + 1] = h[t] + m * (h_new - h[t])
    cache = GRUCache(x, h, gates, hn, w_ih, w_hh, lengths, b_ih is not None)
    return y, h[T].copy(), cache


def gru_backward(
    dy: np.ndarray, dh_n: np.ndarray, cache: GRUCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backpropagate through time over the sequence of the matching :func:`gru_forward`.

    Returns
    -------
    dx : (T, B, I); dh0 : (B, H); dw_ih : (3H, I); dw_hh : (3H, H);
    db_ih, db_hh : (3H,), or None without bias.
    """
    x, h, gates, hn, w_ih, w_hh, lengths, has_bias = cache
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    dxp = np.empty_like(gates)  # gradient w.r.t. x W_ih^T + b_ih
    dhp = np.empty_like(gates)  # gradient w.r.t. h W_hh^T + b_hh
    dh = dh_n.astype(dtype, copy=True)
    for t in range(T - 1, -1, -1):
        a = gates[t]
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        m = step_mask(lengths, t, dtype)
        dh_new = dh + dy[t]
        if m is not None:
            dh_new *= m
            dh_keep = dh * (1 - m)
        dr, dz, dn = (dxp[t, :, k * H : (k + 1) * H] for k in range(3))
        np.multiply(dh_new * (1 - z), 1 - n * n, out=dn)
        np.multiply(dh_new * (h[t] - n), z * (1 - z), out=dz)
        np.multiply(dn * hn[t], r * (1 - r), out=dr)
        dhp[t, :, : 2 * H] = dxp[t, :, : 2 * H]
        np.multiply(dn, r, out=dhp[t, :, 2 * H :])
        dh = dhp[t] @ w_hh
        dh += dh_new * z
        if m is not None:
            dh += dh_keep
    flat_x = dxp.reshape(T * B, -1)
    flat_h = dhp.reshape(T * B, -1)
    dw_ih = flat_x.T @ x.reshape(T * B, -1)
    dw_hh = flat_h.T @ h[:-1].reshape(T * B, -1)
    dx = (flat_x @ w_ih).reshape(T, B, -1)
    db_ih = flat_x.sum(axis=0) if has_bias else None
    db_hh = flat_h.sum(axis=0) if has_bias else None
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh
