"""Optimizers (SGD with momentum, Adam) and gradient clipping (global norm, by value).

An optimizer holds the live parameter arrays (``model.parameters()``) and updates them in place,
so the layers see the new values without any copy. Gradients are passed to :meth:`step` as a
dict with the same keys. Every update, scale and clamp of a parameter or a gradient goes
through the storage arithmetic of the array's backend (:mod:`cuda_rnn.backend`): computed in
the compute dtype (float32 for 16-bit storage) and rounded once. Optimizer state (momentum,
moments) is kept in the compute dtype.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .backend import for_array, to_numpy

Array = Any  # a NumPy or CuPy array


def _check_lr(lr: float) -> float:
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr: expected a finite number > 0, got {lr!r}")
    return float(lr)


def _check_keys(grads: dict[str, Array], params: dict[str, Array]) -> None:
    if set(grads) != set(params):
        raise ValueError(
            f"grads: expected keys {sorted(params)}, got {sorted(grads)}"
        )


class Optimizer:
    """Base class: parameters, learning rate and per-parameter state buffers."""

    def __init__(self, params: dict[str, Array], lr: float) -> None:
        if not params:
            raise ValueError("params: expected a non-empty dict of arrays, got an empty one")
        self.params = dict(params)
        self.lr = _check_lr(lr)
        self.steps = 0
        self._buffers: dict[str, dict[str, Array]] = {}
        self._backends = {name: for_array(p) for name, p in self.params.items()}

    def _buffer(self, kind: str, name: str) -> Array:
        """A zero-initialised state array shaped like parameter ``name``, in its compute dtype."""
        bufs = self._buffers.setdefault(kind, {})
        if name not in bufs:
            bufs[name] = self._backends[name].xp.zeros(self.params[name].shape,
                                                       self._compute_dtype(name))
        return bufs[name]

    def _compute_dtype(self, name: str) -> np.dtype:
        be = self._backends[name]
        return be.compute_dtype(be.storage_name(self.params[name]))

    def step(self, grads: dict[str, Array]) -> None:
        """Apply one update to every parameter from its gradient in ``grads``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of the state: ``"{kind}/{name}"`` arrays, ``"steps"`` and ``"lr"``."""
        out = {f"{kind}/{name}": to_numpy(a).copy()
               for kind, bufs in self._buffers.items() for name, a in bufs.items()}
        out["steps"] = np.array(self.steps, dtype=np.int64)
        out["lr"] = np.array(self.lr, dtype=np.float64)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a state from :meth:`state_dict` (buffers go to the parameters' device).

        Raises
        ------
        ValueError
            For a buffer whose parameter does not exist or whose shape differs.
        """
        buffers: dict[str, dict[str, Array]] = {}
        for key, value in state.items():
            if key in ("steps", "lr"):
                continue
            kind, _, name = key.partition("/")
            if name not in self.params:
                raise ValueError(
                    f"state[{key!r}]: expected a buffer of one of {sorted(self.params)}, "
                    f"got parameter {name!r}"
                )
            param = self.params[name]
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(
                    f"state[{key!r}]: expected shape {tuple(param.shape)}, got {tuple(value.shape)}"
                )
            buf = self._backends[name].xp.array(value, dtype=self._compute_dtype(name))
            buffers.setdefault(kind, {})[name] = buf
        self._buffers = buffers
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])


class SGD(Optimizer):
    """Stochastic gradient descent with optional (heavy-ball) momentum.

    ``v = momentum * v + g;  p -= lr * v`` (PyTorch's form; ``momentum=0`` is plain SGD).
    """

    def __init__(self, params: dict[str, Array], lr: float, momentum: float = 0.0) -> None:
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: expected a number in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)

    def step(self, grads: dict[str, Array]) -> None:
        _check_keys(grads, self.params)
        self.steps += 1
        for name, p in self.params.items():
            be = self._backends[name]
            g = be.compute(grads[name])
            if self.momentum:
                v = self._buffer("momentum", name)
                v *= self.momentum
                v += g
                g = v
            be.add_into(p, -self.lr * g)


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected first and second moments.

    ``m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    """

    def __init__(
        self,
        params: dict[str, Array],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params, lr)
        for k, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"betas[{k}]: expected a number in [0, 1), got {b!r}")
        if not eps > 0:
            raise ValueError(f"eps: expected a number > 0, got {eps!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)

    def step(self, grads: dict[str, Array]) -> None:
        _check_keys(grads, self.params)
        self.steps += 1
        b1, b2 = self.betas
        c1 = 1.0 - b1 ** self.steps
        c2 = 1.0 - b2 ** self.steps
        for name, p in self.params.items():
            be = self._backends[name]
            g = be.compute(grads[name])
            m = self._buffer("m", name)
            v = self._buffer("v", name)
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            be.add_into(p, -(self.lr / c1) * m / (be.xp.sqrt(v / c2) + self.eps))


def global_norm(grads: dict[str, Array]) -> float:
    """sqrt of the sum of squares of every gradient element (inf or nan if any is)."""
    total = 0.0
    for g in grads.values():
        total += float((for_array(g).compute(g).astype(np.float64) ** 2).sum())
    return math.sqrt(total)


def clip_grad_norm(grads: dict[str, Array], max_norm: float) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    Returns
    -------
    The global norm before clipping. A non-finite norm leaves the gradients unchanged, so the
    caller can see it and stop rather than apply a scaled-to-nan update.
    """
    if not (isinstance(max_norm, (int, float)) and max_norm > 0):
        raise ValueError(f"max_norm: expected a number > 0, got {max_norm!r}")
    norm = global_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            for_array(g).scale(g, scale)
    return norm


def clip_grad_value(grads: dict[str, Array], clip_value: float) -> None:
    """Clamp every gradient element in place into [-clip_value, clip_value]."""
    if not (isinstance(clip_value, (int, float)) and clip_value > 0):
        raise ValueError(f"clip_value: expected a number > 0, got {clip_value!r}")
    for g in grads.values():
        for_array(g).clip(g, -clip_value, clip_value)
