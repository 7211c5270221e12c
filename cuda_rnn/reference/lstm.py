"""LSTM forward over a sequence and its exact reverse-time BPTT, in NumPy, with the variants.

Gates in PyTorch order i, f, g, o (i, g, o without a forget gate), each a block of H columns of
the (B, G*H) pre-activation:

    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    a_i += w_ci * c_{t-1};  a_f += w_cf * c_{t-1}            (peephole)
    i = sigmoid(a_i)   f = sigmoid(a_f) (1 without a forget gate)   g = tanh(a_g)
    c_t = f * c_{t-1} + i * g
    a_o += w_co * c_t                                        (peephole)
    o = sigmoid(a_o)   m_t = o * tanh(c_t)   h_t = m_t, or W_hr m_t with a projection

Backward, from dh_t and dc_t (the loss's gradients with respect to h_t and c_t through step
t+1; dh_n and dc_n at t = T-1):

    dh = dh_t + dy_t                   dm = dh (dh W_hr with a projection; dW_hr += dh^T m_t)
    da_o = dm * tanh(c_t) * o (1 - o)
    dc = dc_t + dm * o * (1 - tanh(c_t)^2) + da_o * w_co
    da_i = dc * g * i (1 - i)          da_f = dc * c_{t-1} * f (1 - f)     da_g = dc * i * (1 - g^2)
    dc_{t-1} = dc * f + da_i * w_ci + da_f * w_cf           dh_{t-1} = da W_hh

The factors after dc and dm are local derivatives of step t; they do not depend on the
recursion, so backward computes them for all steps at once and the loop multiplies them in.

With ``lengths``, a sequence past its end keeps its state (h_t = h_{t-1}, c_t = c_{t-1}) and
outputs zeros, so gradients flow only through valid steps (PackedSequence semantics).

Regularisers (their masks drawn by the caller): zoneout d_h on h and d_c on c (1 keeps the
previous value, or their expectations) give c_t = d_c * c_{t-1} + (1 - d_c) * c'_t and
h_t = d_h * h_{t-1} + (1 - d_h) * h'_t, y_t = h_t, where c'_t and h'_t are the values above
(o and h'_t read c'_t); a recurrent dropout mask r of shape (B, P'), the same at every step,
scales the recurrent product's input, a = ... + (h_{t-1} * r) W_hh^T, so dh_{t-1} gets
(da W_hh) * r and dW_hh = sum_t da_t^T (h_{t-1} * r).

Layer normalisation (``ln``): a = LN(x_t W_ih^T) * ln_ih + LN(h_{t-1} W_hh^T) * ln_hh + b_ih
+ b_hh, each LN over all G*H pre-activations, and h'_t = o * tanh(LN(c'_t) * ln_c + ln_bc)
(the state carried on is c'_t itself); LN(z) = (z - mean z) / sqrt(var z + 1e-5).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .common import (
    add_bias,
    input_projection,
    keep_past_end,
    layer_norm,
    layer_norm_backward,
    split_state_gradient,
    step_masks,
    update_weights,
    weight_gradients,
)


class LSTMCache(NamedTuple):
    """What backward needs: inputs, every state, post-activation gates and tanh(c_t)."""

    x: np.ndarray  # (T, B, I)
    h: np.ndarray  # (T+1, B, P'): h_0 .. h_T (masked states)
    c: np.ndarray  # (T+1, B, H)
    gates: np.ndarray  # (T, B, G*H): i, f, g, o (i, g, o) after their nonlinearities
    tanh_c: np.ndarray  # (T, B, H): tanh of the unmasked new cell state
    w_ih: np.ndarray
    w_hh: np.ndarray
    lengths: np.ndarray | None
    has_bias: bool
    m: np.ndarray | None  # (T, B, H): o * tanh(c_t) before the projection, or None
    w_hr: np.ndarray | None
    w_ch: np.ndarray | None
    forget_gate: bool
    zoneout: np.ndarray | float | None  # on h
    zoneout_cell: np.ndarray | float | None
    recurrent_mask: np.ndarray | None
    c_new: np.ndarray | None  # (T, B, H): c'_t before zoneout_cell mixes it, or None
    ln: tuple[np.ndarray, ...] | None  # ln_ih, ln_hh, ln_c, ln_bc
    norms: dict[str, np.ndarray] | None  # the normalised values and their 1 / std, by name


def _gate_names(forget_gate: bool) -> tuple[str, ...]:
    return ("i", "f", "g", "o") if forget_gate else ("i", "g", "o")


def _gate_blocks(gates: np.ndarray, forget_gate: bool) -> dict[str, np.ndarray]:
    """Views of the (..., G*H) gate columns by gate name, each (..., H)."""
    names = _gate_names(forget_gate)
    return dict(zip(names, np.split(gates, len(names), axis=-1)))


def _peepholes(w_ch: np.ndarray | None, forget_gate: bool) -> dict[str, np.ndarray]:
    """w_ci, w_cf, w_co of ``weight_ch`` by gate name (w_cf only with a forget gate)."""
    if w_ch is None:
        return {}
    names = ("i", "f", "o") if forget_gate else ("i", "o")
    return dict(zip(names, np.split(w_ch, len(names))))


def lstm_forward(
    x: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    b_ih: np.ndarray | None,
    b_hh: np.ndarray | None,
    lengths: np.ndarray | None = None,
    *,
    w_hr: np.ndarray | None = None,
    w_ch: np.ndarray | None = None,
    forget_gate: bool = True,
    zoneout: np.ndarray | float | None = None,
    zoneout_cell: np.ndarray | float | None = None,
    recurrent_mask: np.ndarray | None = None,
    ln_ih: np.ndarray | None = None,
    ln_hh: np.ndarray | None = None,
    ln_c: np.ndarray | None = None,
    ln_bc: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LSTMCache]:
    """Run one LSTM layer-direction over a time-major sequence.

    Parameters
    ----------
    x : (T, B, I) input.
    h0 : (B, P') and c0 : (B, H) initial states (P' = P with a projection, else H).
    w_ih : (G*H, I); w_hh : (G*H, P'); b_ih, b_hh : (G*H,) or None; G = 4, or 3 without a
        forget gate.
    lengths : (B,) integers in [1, T], or None for full-length sequences.
    w_hr : (P, H) projection, or None.
    w_ch : peephole weights [w_ci; w_cf; w_co] (3H,), [w_ci; w_co] (2H,) without a forget
        gate, or None.
    forget_gate : False for c_t = c_{t-1} + i * g.
    zoneout, zoneout_cell : (T, B, P') and (T, B, H) zoneout masks of h and c (1 keeps the
        previous value), floats (their expectations, eval mode), or None.
    recurrent_mask : (B, P') recurrent dropout mask, or None.
    ln_ih, ln_hh : (G*H,); ln_c, ln_bc : (H,): the layer norm's gains and the cell's bias,
        all four or none.

    Returns
    -------
    y : (T, B, P') outputs (zero past each sequence's end).
    h_n, c_n : (B, P') and (B, H) states at each sequence's last valid step.
    cache : what :func:`lstm_backward` needs.
    """
    T, B, _ = x.shape
    names = _gate_names(forget_gate)
    G = len(names)
    H = w_ih.shape[0] // G
    P = w_hh.shape[1]
    dtype = x.dtype
    # sigmoid(a) = 0.5 * tanh(a / 2) + 0.5: halving the rows of the sigmoid gates (all but g) in
    # the weights, bias and peepholes (exact in floating point) lets one tanh cover every gate;
    # then a * scale + shift per column turns tanh into sigmoid and leaves g as it is.
    k = names.index("g")
    g_cols = slice(k * H, (k + 1) * H)
    scale = np.full(G * H, 0.5, dtype)
    scale[g_cols] = 1.0
    shift = np.full(G * H, 0.5, dtype)
    shift[g_cols] = 0.0
    bias = add_bias(b_ih, b_hh)
    ln = None if ln_ih is None else (ln_ih, ln_hh, ln_c, ln_bc)
    norms = None
    if ln is None:
        xp = input_projection(x, w_ih * scale[:, None], None if bias is None else bias * scale)
        w_hh_t = np.ascontiguousarray((w_hh * scale[:, None]).T)
    else:
        # The sigmoid columns are halved after the normalisation, in its gains.
        xhat, x_rstd = layer_norm(input_projection(x, w_ih, None))
        xp = xhat * (ln_ih * scale)
        if bias is not None:
            xp += bias * scale
        w_hh_t = np.ascontiguousarray(w_hh.T)
        gain_hh = ln_hh * scale
        norms = {"x": xhat, "x_rstd": x_rstd, "h": np.empty((T, B, G * H), dtype),
                 "h_rstd": np.empty((T, B, 1), dtype), "c": np.empty((T, B, H), dtype),
                 "c_rstd": np.empty((T, B, 1), dtype)}
    peep = _peepholes(None if w_ch is None else w_ch * 0.5, forget_gate)
    # With peepholes, o reads the new c_t: the tanh of every other gate (a prefix, o is last)
    # comes first.
    front = slice(0, (G - 1) * H) if peep else slice(0, G * H)
    w_hr_t = None if w_hr is None else np.ascontiguousarray(w_hr.T)
    h = np.empty((T + 1, B, P), dtype)
    c = np.empty((T + 1, B, H), dtype)
    gates = np.empty((T, B, G * H), dtype)
    tanh_c = np.empty((T, B, H), dtype)
    m = None if w_hr is None else np.empty((T, B, H), dtype)
    ig = np.empty((B, H), dtype)
    h[0], c[0] = h0, c0
    valid = step_masks(lengths, T, dtype)
    take_h = update_weights(valid, zoneout, (T, B, P), dtype)
    take_c = update_weights(valid, zoneout_cell, (T, B, H), dtype)
    c_cand = None if zoneout_cell is None else np.empty((T, B, H), dtype)
    y = np.zeros((T, B, P), dtype) if valid is not None else h[1:]
    h_in = None if recurrent_mask is None else np.empty((B, P), dtype)
    blocks = _gate_blocks(gates, forget_gate)
    i, g, o = blocks["i"], blocks["g"], blocks["o"]
    # (gate block, peephole) of the gates that read c_{t-1}: none without peepholes.
    reads_c_prev = [(blocks[n], peep[n]) for n in ("i", "f") if n in peep]
    for t in range(T):
        a = gates[t]
        if h_in is None:
            np.matmul(h[t], w_hh_t, a)
        else:
            np.multiply(h[t], recurrent_mask, h_in)
            np.matmul(h_in, w_hh_t, a)
        if norms is not None:
            norms["h"][t], norms["h_rstd"][t] = layer_norm(a)
            np.multiply(norms["h"][t], gain_hh, a)
        a += xp[t]
        for block, w in reads_c_prev:
            block[t] += w * c[t]
        a_front = a[:, front]
        np.tanh(a_front, a_front)
        a_front *= scale[front]
        a_front += shift[front]
        c_new, h_new = c[t + 1], h[t + 1]
        np.multiply(i[t], g[t], ig)
        if forget_gate:
            np.multiply(blocks["f"][t], c[t], c_new)
            c_new += ig
        else:
            np.add(c[t], ig, c_new)
        if peep:
            o_t = o[t]
            o_t += peep["o"] * c_new
            np.tanh(o_t, o_t)
            o_t *= 0.5
            o_t += 0.5
        if norms is None:
            np.tanh(c_new, tanh_c[t])
        else:
            norms["c"][t], norms["c_rstd"][t] = layer_norm(c_new)
            np.tanh(norms["c"][t] * ln_c + ln_bc, tanh_c[t])
        if m is None:
            np.multiply(o[t], tanh_c[t], h_new)
        else:
            np.multiply(o[t], tanh_c[t], m[t])
            np.matmul(m[t], w_hr_t, h_new)
        if c_cand is not None:
            c_cand[t] = c_new
        if take_c is not None:
            keep_past_end(c_new, c[t], take_c[t], c_new)
        if take_h is not None:
            keep_past_end(h_new, h[t], take_h[t], h_new)
            if valid is not None:
                np.multiply(h_new, valid[t], y[t])
    cache = LSTMCache(x, h, c, gates, tanh_c, w_ih, w_hh, lengths, b_ih is not None, m, w_hr,
                      w_ch, forget_gate, zoneout, zoneout_cell, recurrent_mask, c_cand, ln,
                      norms)
    return y, h[T].copy(), c[T].copy(), cache


def lstm_backward(
    dy: np.ndarray, dh_n: np.ndarray, dc_n: np.ndarray, cache: LSTMCache
) -> tuple[np.ndarray | None, ...]:
    """Backpropagate through time over the sequence of the matching :func:`lstm_forward`.

    Parameters
    ----------
    dy : (T, B, P') gradient of the loss with respect to y.
    dh_n : (B, P') and dc_n : (B, H) gradients with respect to the final states.
    cache : from :func:`lstm_forward`.

    Returns
    -------
    dx : (T, B, I); dh0 : (B, P'); dc0 : (B, H); dw_ih : (G*H, I); dw_hh : (G*H, P');
    db_ih, db_hh : (G*H,) (equal, since both biases enter the same sum), or None without bias;
    then dw_hr (P, H) with a projection, dw_ch with peepholes, and with layer normalisation
    the gradients of ln_ih, ln_hh, ln_c and ln_bc.
    """
    (x, h, c, gates, tanh_c, w_ih, w_hh, lengths, has_bias, m, w_hr, w_ch, forget_gate,
     zoneout, zoneout_cell, rec, c_cand, ln, norms) = cache
    T, B, _ = x.shape
    G = len(_gate_names(forget_gate))
    H = c.shape[2]
    P = h.shape[2]
    dtype = x.dtype
    blocks = _gate_blocks(gates, forget_gate)
    i, g, o = blocks["i"], blocks["g"], blocks["o"]
    # The local derivatives of every step, stored where da goes: the loop scales the blocks
    # before o by dc and the block o by dm. Each gate's derivative with respect to its
    # pre-activation, s (1 - s) for a sigmoid and (1 - g)(1 + g) for g, is (1 - a)(a + beta)
    # with beta 1 on g's columns: two passes over all gates, in place but for one temporary.
    dgates = np.empty_like(gates)
    dblocks = _gate_blocks(dgates, forget_gate)
    beta = np.zeros(G * H, dtype)
    beta[_gate_names(forget_gate).index("g") * H:][:H] = 1
    np.subtract(1, gates, dgates)
    dgates *= gates + beta
    dblocks["i"] *= g
    if forget_gate:
        f = blocks["f"]
        dblocks["f"] *= c[:-1]
    dblocks["g"] *= i
    do = dblocks["o"]
    do *= tanh_c
    dm_dc = tanh_c * tanh_c
    np.subtract(1, dm_dc, dm_dc)
    dm_dc *= o
    scaled_by_dc = dgates.reshape(T, B, G, H)[:, :, : G - 1]
    peep = _peepholes(w_ch, forget_gate)
    reads_c_prev = [(dblocks[n], peep[n]) for n in ("i", "f") if n in peep]
    valid = step_masks(lengths, T, dtype)
    take_h = update_weights(valid, zoneout, (T, B, P), dtype)
    take_c = update_weights(valid, zoneout_cell, (T, B, H), dtype)
    dh = np.empty((B, P), dtype)
    dm = dh if w_hr is None else np.empty((B, H), dtype)
    dhs = None if w_hr is None else np.empty((T, B, P), dtype)
    dc = np.empty((B, H), dtype)
    dc_each_block = dc[:, None]
    dh_t = dh_n.astype(dtype, copy=True)
    dc_t = dc_n.astype(dtype, copy=True)
    if norms is not None:
        # dn: the gradient at LN(c') * ln_c + ln_bc; dhp: at the recurrent product.
        dn = np.empty((T, B, H), dtype)
        dhp = np.empty_like(gates)
    for t in range(T - 1, -1, -1):
        # The share of a state that is its previous value (past a sequence's end, or zoned
        # out) passes its gradient straight back.
        dh_keep = split_state_gradient(dh_t, dy[t], valid, take_h, t, dh)
        dc_keep = split_state_gradient(dc_t, None, valid, take_c, t, dc_t)
        if dhs is not None:
            dhs[t] = dh
            np.matmul(dh, w_hr, dm)
        if norms is None:
            np.multiply(dm, dm_dc[t], dc)
        else:
            np.multiply(dm, dm_dc[t], dn[t])
            dc[...] = layer_norm_backward(dn[t] * ln[2], norms["c"][t], norms["c_rstd"][t])
        dc += dc_t
        do[t] *= dm
        if peep:
            dc += do[t] * peep["o"]
        scaled_by_dc[t] *= dc_each_block
        if forget_gate:
            np.multiply(dc, blocks["f"][t], dc_t)
        else:
            dc_t[...] = dc
        for dblock, w in reads_c_prev:
            dc_t += dblock[t] * w
        if norms is None:
            np.matmul(dgates[t], w_hh, dh_t)
        else:
            dhp[t] = layer_norm_backward(dgates[t] * ln[1], norms["h"][t], norms["h_rstd"][t])
            np.matmul(dhp[t], w_hh, dh_t)
        if rec is not None:
            dh_t *= rec
        if dh_keep is not None:
            dh_t += dh_keep
        if dc_keep is not None:
            dc_t += dc_keep
    h_prev = h[:-1] if rec is None else h[:-1] * rec
    if norms is None:
        dw_ih, dw_hh, db = weight_gradients(dgates, x, h_prev)
        dx = (dgates.reshape(T * B, -1) @ w_ih).reshape(T, B, -1)
    else:
        # dXp of every step in one pass (dHp was formed step by step in the loop).
        dxp = layer_norm_backward(dgates * ln[0], norms["x"], norms["x_rstd"]).reshape(T * B, -1)
        dw_ih = dxp.T @ x.reshape(T * B, -1)
        dw_hh = dhp.reshape(T * B, -1).T @ h_prev.reshape(T * B, -1)
        db = dgates.reshape(T * B, -1).sum(axis=0)
        dx = (dxp @ w_ih).reshape(T, B, -1)
    db_ih = db if has_bias else None
    db_hh = db.copy() if has_bias else None
    extra: list[np.ndarray] = []
    if w_hr is not None:
        extra.append(dhs.reshape(T * B, P).T @ m.reshape(T * B, H))
    if peep:
        # dL/dw_ci = sum da_i * c_{t-1}, dL/dw_cf = sum da_f * c_{t-1}, dL/dw_co = sum da_o * c_t
        states = {"i": c[:-1], "f": c[:-1], "o": c[1:] if c_cand is None else c_cand}
        extra.append(np.concatenate([
            np.einsum("tbh,tbh->h", dblocks[name], states[name]) for name in peep]))
    if norms is not None:
        extra += [np.einsum("tbg,tbg->g", dgates, norms["x"]),
                  np.einsum("tbg,tbg->g", dgates, norms["h"]),
                  np.einsum("tbh,tbh->h", dn, norms["c"]), dn.sum(axis=(0, 1))]
    return (dx, dh_t, dc_t, dw_ih, dw_hh, db_ih, db_hh, *extra)
