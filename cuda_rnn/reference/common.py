"""Pointwise helpers shared by the reference cells."""
from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function computed as 0.5 * (1 + tanh(x / 2)): no overflow for any finite x."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def step_masks(lengths: np.ndarray | None, T: int, dtype: np.dtype) -> np.ndarray | None:
    """(T, B, 1) masks, 1 where step t lies inside sequence b, 0 past its end (None: no lengths)."""
    if lengths is None:
        return None
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(dtype)[:, :, None]



def update_weights(valid: np.ndarray | None, zoneout: np.ndarray | float | None,
                   shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """The weight of the new value in each state update, ``state_t = old + w * (new - old)``:
    ``valid * (1 - d)`` with ``valid`` the (T, B, 1) step masks of :func:`step_masks` and
    ``d`` the zoneout of ``shape`` (T, B, N) (1 keeps the previous value) or its expectation,
    a float; None when there are neither (every new value is taken)."""
    if zoneout is None:
        return valid
    take = np.broadcast_to(1 - np.asarray(zoneout, dtype), shape)
    return np.ascontiguousarray(take if valid is None else take * valid)


def split_state_gradient(d_state: np.ndarray, dy: np.ndarray | None, valid: np.ndarray | None,
                         take: np.ndarray | None, t: int, out: np.ndarray) -> np.ndarray | None:
    """Backward of step t's ``state_t = old + take_t * (new - old)`` (see
    :func:`update_weights`), ``y_t = state_t * valid_t``.

    The gradient reaching state_t is ``d_state`` (from step t+1) plus ``dy`` where the step is
    valid (``dy`` None: no output term). ``out`` (which may be ``d_state`` itself) gets the
    part for the new value, take_t times the total; the part for the old value, passed
    straight back, is returned (None without ``take``, where all of it is the new value's).
    """
    if dy is None:
        if out is not d_state:
            out[...] = d_state
    elif valid is None:
        np.add(d_state, dy, out)
    else:
        np.multiply(dy, valid[t], out)
        out += d_state
    if take is None:
        return None
    keep = out * (1 - take[t])
    out *= take[t]
    return keep


def keep_past_end(new: np.ndarray, old: np.ndarray, mask: np.ndarray, out: np.ndarray) -> None:
    """``out = old + mask * (new - old)`` in place: a state past its sequence's end (mask 0)
    keeps its old value, one inside (mask 1) takes the new one."""
    np.subtract(new, old, out)
    out *= mask
    out += old

def input_projection(x: np.ndarray, w_ih: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Xp = x W_ih^T + bias for all steps at once: one GEMM of (T*B, I) by (I, G*H)."""
    T, B, I = x.shape
    xp = (x.reshape(T * B, I) @ w_ih.T).reshape(T, B, -1)
    if bias is not None:
        xp += bias
    return xp


def weight_gradients(
    dgates: np.ndarray, x: np.ndarray, h_prev: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dW_ih = sum_t dG_t^T x_t, dW_hh = sum_t dG_t^T h_{t-1}, db = sum_t dG_t (one GEMM each)."""
    T, B, G = dgates.shape
    flat = dgates.reshape(T * B, G)
    dw_ih = flat.T @ x.reshape(T * B, -1)
    dw_hh = flat.T @ h_prev.reshape(T * B, -1)
    return dw_ih, dw_hh, flat.sum(axis=0)


def add_bias(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Sum of two optional bias vectors (None when both are absent)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


#: The variance floor of the layer-normalised LSTM.
LN_EPS = 1e-5


def layer_norm(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z - mean(z)) / sqrt(var(z) + eps) over the last axis, the biased variance, and the
    1 / sqrt(var + eps) it divided by (keepdims)."""
    centred = z - z.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LN_EPS)
    return centred * rstd, rstd


def layer_norm_backward(dzhat: np.ndarray, zhat: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """dL/dz from dL/dzhat through :func:`layer_norm` (zhat and rstd from its forward)."""
    return rstd * (dzhat - dzhat.mean(axis=-1, keepdims=True)
                   - zhat * (dzhat * zhat).mean(axis=-1, keepdims=True))

