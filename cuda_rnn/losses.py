"""Losses for sequence outputs; each returns the loss (a Python float) and its gradient.

Each function computes with the array module of its input (NumPy, or CuPy for arrays on the
GPU), so the gradient comes back on the device of the input; only the loss is a host float.

Every loss is a mean over the positions it counts (all of them, or where ``mask`` is nonzero),
so its size does not depend on the batch size or sequence length.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import array_module

Array = Any  # a NumPy or CuPy array

LOSS_KINDS = ("mse", "xent")


def _module_of(a: Array) -> Any:
    return np if isinstance(a, np.ndarray) else array_module("cuda")


def _mask_weights(mask: Array | None, shape: tuple[int, ...], like: Array) -> tuple[Array, float]:
    """Per-position weights (1/count where counted, 0 elsewhere) and the count."""
    xp = _module_of(like)
    if mask is None:
        count = float(np.prod(shape)) if shape else 1.0
        return xp.full(shape, 1.0 / count, dtype=like.dtype), count
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask: expected shape {tuple(shape)}, got {tuple(mask.shape)}")
    m = (mask != 0).astype(like.dtype)
    count = float(m.sum())
    if count == 0:
        raise ValueError("mask: expected at least one nonzero position, got none")
    return m / count, count


def softmax_cross_entropy(
    logits: Array, targets: Array, mask: Array | None = None
) -> tuple[float, Array]:
    """Mean negative log-likelihood of integer targets under softmax(logits).

    Parameters
    ----------
    logits : (..., C) scores, typically (T, B, C).
    targets : (...) integer classes in [0, C), shaped like ``logits`` without its last axis.
    mask : (...) optional; positions where it is zero are left out of the mean.

    Returns
    -------
    loss : mean over the counted positions, in nats.
    dlogits : (..., C) gradient of ``loss`` with respect to ``logits``.

    Notes
    -----
    Computed with log-sum-exp around the row maximum, so no logit overflows ``exp``.
    """
    if logits.ndim < 1 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"targets: expected shape {tuple(logits.shape[:-1])} (logits without the class "
            f"axis), got {tuple(targets.shape)}"
        )
    if targets.dtype.kind not in "iu":
        raise ValueError(f"targets: expected an integer dtype, got {targets.dtype}")
    classes = logits.shape[-1]
    if targets.size and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        raise ValueError(
            f"targets: expected classes in [0, {classes}), "
            f"got min {int(targets.min())} and max {int(targets.max())}"
        )
    xp = _module_of(logits)
    weights, _ = _mask_weights(mask, tuple(targets.shape), logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    onehot = (targets[..., None] == xp.arange(classes)).astype(logits.dtype)
    picked = (log_probs * onehot).sum(axis=-1)  # log p(target) at each position
    loss = -float((picked * weights).sum())
    grad = xp.exp(log_probs)
    grad -= onehot
    grad *= weights[..., None]
    return loss, grad


def mse(pred: Array, target: Array, mask: Array | None = None) -> tuple[float, Array]:
    """Mean squared error.

    Parameters
    ----------
    pred, target : arrays of one shape, e.g. (T, B, O).
    mask : optional, shaped like ``pred`` without its last axis, e.g. (T, B); the mean runs
        over the masked positions and all their output units.

    Returns
    -------
    loss : mean of (pred - target)^2 over the counted elements.
    dpred : gradient of ``loss`` with respect to ``pred``.
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"target: expected shape {tuple(pred.shape)}, got {tuple(target.shape)}")
    diff = pred - target.astype(pred.dtype)
    if mask is None:
        weights, _ = _mask_weights(None, tuple(pred.shape), pred)
    else:
        per_pos, _ = _mask_weights(mask, tuple(pred.shape[:-1]), pred)
        weights = _module_of(pred).broadcast_to(per_pos[..., None] / pred.shape[-1], pred.shape)
    loss = float((diff * diff * weights).sum())
    return loss, 2.0 * diff * weights


def sequence_loss(
    kind: str, outputs: Array, targets: Array, mask: Array | None = None
) -> tuple[float, Array]:
    """Dispatch to :func:`mse` ("mse") or :func:`softmax_cross_entropy` ("xent")."""
    if kind == "mse":
        return mse(outputs, targets, mask)
    if kind == "xent":
        return softmax_cross_entropy(outputs, targets, mask)
    raise ValueError(f"kind: expected one of {LOSS_KINDS}, got {kind!r}")
