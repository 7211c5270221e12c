"""Finite-difference gradcheck of any layer or cell (the norms of dL/dh_t over time are in
:mod:`cuda_rnn.vanishing`).

The gradient of a random linear functional of every output, L = sum_k <W_k, out_k>, is computed
twice: by the module's own backward (BPTT) and by central differences
(L(p + eps) - L(p - eps)) / (2 eps) on each checked element of the input, the initial state(s)
and every parameter. Dropout masks are held fixed by restoring the module's generator before
each forward.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .backend import to_numpy
from .cells import _Cell

__all__ = ["GradcheckResult", "gradcheck"]


@dataclass
class GradcheckResult:
    """Relative error ||analytic - numeric|| / max(||analytic||, ||numeric||) per tensor."""

    errors: dict[str, float] = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        """The largest relative error over all checked tensors."""
        return max(self.errors.values(), default=0.0)

    def passed(self, tol: float = 1e-6) -> bool:
        """True when every tensor's relative error is below ``tol``."""
        return self.max_error < tol


def _flatten(out: Any) -> list[Any]:
    """(y, h) / (y, (h, c)) / h / (h, c) -> a flat list of arrays."""
    if isinstance(out, tuple):
        return [a for part in out for a in _flatten(part)]
    return [out]


def _relative_error(a: np.ndarray, n: np.ndarray) -> float:
    scale = max(np.linalg.norm(a), np.linalg.norm(n), 1e-300)
    return float(np.linalg.norm(a - n) / scale)


def _central_differences(
    f: Callable[[], float], flat: Any, picks: np.ndarray, eps: float
) -> np.ndarray:
    """(f(a_i + eps) - f(a_i - eps)) / (2 eps) for each picked element of ``flat`` (a view of
    the live array, perturbed in place and restored)."""
    out = np.empty(len(picks))
    for j, i in enumerate(picks):
        orig = float(flat[i])
        flat[i] = orig + eps
        up = f()
        flat[i] = orig - eps
        down = f()
        flat[i] = orig
        out[j] = (up - down) / (2 * eps)
    return out


def gradcheck(
    module: Any,
    x: Any,
    state: Any = None,
    lengths: Any = None,
    *,
    eps: float = 1e-6,
    max_elements: int | None = None,
    seed: int = 0,
) -> GradcheckResult:
    """Compare a layer's or cell's backward with central finite differences.

    Parameters
    ----------
    module : a float64 layer (RNN, LSTM, GRU) or cell (RNNCell, LSTMCell, GRUCell).
    x : its input; state : its initial state (checked too when given); lengths : for layers.
    eps : the finite-difference step.
    max_elements : check at most this many randomly chosen elements per tensor (None: all).
    seed : seeds the random output weights and the element choice.

    Returns
    -------
    GradcheckResult, with one relative error per checked tensor ("x", "h0", parameter names).
    The module's accumulated gradients are left as they were.
    """
    if module.dtype != "float64":
        raise ValueError(f"module.dtype: expected 'float64' for gradcheck, got {module.dtype!r}")
    is_cell = isinstance(module, _Cell)
    xp = module.xp
    rng = np.random.default_rng(seed)
    rng_state = copy.deepcopy(module.rng.bit_generator.state)
    x = xp.asarray(to_numpy(x), dtype=np.float64)
    states = None if state is None else [
        xp.asarray(to_numpy(s), dtype=np.float64) for s in _flatten(state)
    ]

    def run() -> list[Any]:
        module.rng.bit_generator.state = copy.deepcopy(rng_state)
        st = None if states is None else (states[0] if len(states) == 1 else tuple(states))
        out = module(x, st) if is_cell else module(x, st, lengths)
        return _flatten(out)

    weights = [xp.asarray(rng.standard_normal(o.shape)) for o in run()]
    if is_cell:
        module._stack.clear()

    saved_grads = {k: g.copy() for k, g in module.grads.items()}
    module.zero_grad()
    run()
    if is_cell:
        dx, dstate = module.backward(*weights)  # one output per state: dL/d(state)
    else:
        dstate_in = weights[1] if len(weights) == 2 else tuple(weights[1:])
        dx, dstate = module.backward(weights[0], dstate_in)
    analytic = {"x": to_numpy(dx)}
    targets: dict[str, Any] = {"x": x}
    if states is not None:
        for name, s, g in zip(module.spec.initial_state_names, states, _flatten(dstate)):
            analytic[name], targets[name] = to_numpy(g), s
    for name, p in module.parameters().items():
        analytic[name], targets[name] = np.array(to_numpy(module.grads[name])), p
    for k, g in saved_grads.items():
        module.grads[k][...] = g

    was_training = module.training
    if is_cell:
        module.eval()  # numeric evaluations must not stack up saved steps

    def loss() -> float:
        return float(sum(float((o * w).sum()) for o, w in zip(run(), weights)))

    result = GradcheckResult()
    for name, target in targets.items():
        flat = target.reshape(-1)  # a view: perturbing it perturbs the live array
        picks = np.arange(flat.size)
        if max_elements is not None and flat.size > max_elements:
            picks = rng.choice(flat.size, size=max_elements, replace=False)
        numeric = _central_differences(loss, flat, picks, eps)
        ana = analytic[name].reshape(-1)[picks]
        result.errors[name] = _relative_error(ana, numeric)
    module.train(was_training)
    return result
