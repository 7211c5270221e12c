"""GRU forward over a sequence and its exact reverse-time BPTT, in NumPy.

Gates in PyTorch order r, z, n, each a block of H columns:

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

Backward, from dh_t (the loss's gradient with respect to h_t through step t+1; dh_n at
t = T-1), with hn = W_hn h_{t-1} + b_hn:

    dh = dh_t + dy_t
    da_n = dh * (1 - z) * (1 - n^2)
    da_z = dh * (h_{t-1} - n) * z (1 - z)
    da_r = da_n * hn * r (1 - r)
    dh_{t-1} = dHp W_hh + dh * z

Because r multiplies the recurrent part of n only, the gradients with respect to the input
projection (dXp = [da_r, da_z, da_n]) and to the recurrent projection (dHp) differ in their n
block: dHp_n = r * da_n. The factors after dh are local derivatives of step t; they do not depend
on the recursion, so backward computes them for all steps at once and the loop multiplies dh in.
With ``lengths``, a sequence past its end keeps its state and outputs zeros.

Regularisers (their masks drawn by the caller): zoneout d (1 keeps the previous value, or its
expectation p) gives h_t = d * h_{t-1} + (1 - d) * h'_t, y_t = h_t; a recurrent dropout mask
m of shape (B, H), the same at every step, scales the input of the three recurrent products
(W_hr, W_hz, W_hn) but not the z * h_{t-1} term: dh_{t-1} gets (dHp W_hh) * m + dh * z and
dW_hh = sum_t dHp_t^T (h_{t-1} * m).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .common import (
    add_bias,
    input_projection,
    keep_past_end,
    split_state_gradient,
    step_masks,
    update_weights,
)


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
    zoneout: np.ndarray | float | None
    recurrent_mask: np.ndarray | None


def _gate_blocks(gates: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views r, z, n of (..., 3H) gate columns, each (..., H)."""
    r, z, n = np.split(gates, 3, axis=-1)
    return r, z, n


def gru_forward(
    x: np.ndarray,
    h0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    lengths: np.ndarray | None = None,
    *,
    zoneout: np.ndarray | float | None = None,
    recurrent_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, GRUCache]:
    """Run one GRU layer-direction over a time-major sequence.

    Parameters
    ----------
    x : (T, B, I) input.
    h0 : (B, H) initial state.
    w_ih : (3H, I); w_hh : (3H, H); b_ih, b_hh : (3H,) or None.
    lengths : (B,) integers in [1, T], or None for full-length sequences.
    zoneout : (T, B, H) zoneout masks (1 keeps the previous value), a float (their
        expectation, eval mode), or None.
    recurrent_mask : (B, H) recurrent dropout mask, or None.

    Returns
    -------
    y : (T, B, H) outputs (zero past each sequence's end).
    h_n : (B, H) state at each sequence's last valid step.
    cache : what :func:`gru_backward` needs.
    """
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    # sigmoid(a) = 0.5 * tanh(a / 2) + 0.5: the rows of r and z are halved in the weights and
    # biases (exact in floating point). b_hr and b_hz join the input projection; b_hn stays in
    # hn, which r multiplies.
    scale = np.full(3 * H, 0.5, dtype)
    scale[2 * H :] = 1.0
    b_hrz = None if b_hh is None else np.concatenate([b_hh[: 2 * H], np.zeros(H, dtype)])
    bias = add_bias(b_ih, b_hrz)
    b_hn = None if b_hh is None else b_hh[2 * H :]
    xp = input_projection(x, w_ih * scale[:, None], None if bias is None else bias * scale)
    w_hh_t = np.ascontiguousarray((w_hh * scale[:, None]).T)
    h = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, 3 * H), dtype)
    hn = np.empty((T, B, H), dtype)
    h[0] = h0
    hp = np.empty((B, 3 * H), dtype)
    hp_rz, hp_n = hp[:, : 2 * H], hp[:, 2 * H :]
    xp_rz, xp_n = xp[:, :, : 2 * H], xp[:, :, 2 * H :]
    rz = gates[:, :, : 2 * H]
    r, z, n = _gate_blocks(gates)
    valid = step_masks(lengths, T, dtype)
    take = update_weights(valid, zoneout, (T, B, H), dtype)
    y = np.zeros((T, B, H), dtype) if valid is not None else h[1:]
    h_in = None if recurrent_mask is None else np.empty((B, H), dtype)
    for t in range(T):
        if h_in is None:
            np.matmul(h[t], w_hh_t, hp)
        else:
            np.multiply(h[t], recurrent_mask, h_in)
            np.matmul(h_in, w_hh_t, hp)
        np.add(hp_rz, xp_rz[t], rz[t])
        np.tanh(rz[t], rz[t])
        rz[t] *= 0.5
        rz[t] += 0.5
        if b_hn is None:
            hn[t] = hp_n
        else:
            np.add(hp_n, b_hn, hn[t])
        np.multiply(r[t], hn[t], n[t])
        n[t] += xp_n[t]
        np.tanh(n[t], n[t])
        h_new = h[t + 1]
        np.subtract(h[t], n[t], h_new)
        h_new *= z[t]
        h_new += n[t]
        if take is not None:
            keep_past_end(h_new, h[t], take[t], h_new)
            if valid is not None:
                np.multiply(h_new, valid[t], y[t])
    cache = GRUCache(x, h, gates, hn, w_ih, w_hh, lengths, b_ih is not None, zoneout,
                     recurrent_mask)
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
    x, h, gates, hn, w_ih, w_hh, lengths, has_bias, zoneout, rec = cache
    T, B, _ = x.shape
    H = w_hh.shape[1]
    dtype = x.dtype
    r, z, n = _gate_blocks(gates)
    # The local derivatives of every step, stored where dXp and dHp go: the loop multiplies dh in.
    dxp = np.empty_like(gates)  # gradient w.r.t. x W_ih^T + b_ih
    dxp_r, dxp_z, dxp_n = _gate_blocks(dxp)
    np.multiply(1 - z, 1 - n * n, dxp_n)
    np.multiply(h[:-1] - n, z * (1 - z), dxp_z)
    np.multiply(dxp_n, hn * r * (1 - r), dxp_r)
    dhp = dxp.copy()  # gradient w.r.t. h W_hh^T + b_hh
    dhp[:, :, 2 * H :] *= r
    dxp_steps, dhp_steps = dxp.reshape(T, B, 3, H), dhp.reshape(T, B, 3, H)
    valid = step_masks(lengths, T, dtype)
    take = update_weights(valid, zoneout, (T, B, H), dtype)
    dh = np.empty((B, H), dtype)
    dh_each_block = dh[:, None]
    dh_z = np.empty((B, H), dtype)
    dh_t = dh_n.astype(dtype, copy=True)
    for t in range(T - 1, -1, -1):
        dh_keep = split_state_gradient(dh_t, dy[t], valid, take, t, dh)
        dxp_steps[t] *= dh_each_block
        dhp_steps[t] *= dh_each_block
        np.matmul(dhp[t], w_hh, dh_t)
        if rec is not None:
            dh_t *= rec
        np.multiply(dh, z[t], dh_z)
        dh_t += dh_z
        if dh_keep is not None:
            dh_t += dh_keep
    flat_x = dxp.reshape(T * B, -1)
    flat_h = dhp.reshape(T * B, -1)
    dw_ih = flat_x.T @ x.reshape(T * B, -1)
    h_prev = h[:-1] if rec is None else h[:-1] * rec
    dw_hh = flat_h.T @ h_prev.reshape(T * B, -1)
    dx = (flat_x @ w_ih).reshape(T, B, -1)
    db_ih = flat_x.sum(axis=0) if has_bias else None
    db_hh = flat_h.sum(axis=0) if has_bias else None
    return dx, dh_t, dw_ih, dw_hh, db_ih, db_hh
