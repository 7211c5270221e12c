"""Initial parameter values, drawn on the host so that a seed gives the same weights on every
device and dtype.

Values are drawn in float64 from the module's NumPy generator, :data:`CHUNK` elements at a
time, and each chunk is cast into the parameter's storage array on its device. The values are
exactly those of one float64 draw of the whole array cast afterwards, while the host holds at
most one chunk besides the parameter: building a large layer costs its parameters' bytes, not
the three times as much that a whole float64 draw and its cast would.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend
from .cellspec import LAYER_NORM_PARAMETERS

#: Elements drawn at a time: 8 MiB of float64.
CHUNK = 1 << 20


def uniform(
    rng: np.random.Generator, bound: float, shape: tuple[int, ...], dtype: str, device: str
) -> Any:
    """U(-bound, bound) of ``shape`` in storage dtype ``dtype`` on ``device`` (resolved).

    Consumes ``rng`` exactly as ``rng.uniform(-bound, bound, shape)`` would.
    """
    size = int(np.prod(shape, dtype=np.int64))
    first = backend.asarray(rng.uniform(-bound, bound, min(size, CHUNK)), dtype, device)
    out = backend.array_module(device).empty(size, dtype=first.dtype)
    out[: first.size] = first
    for start in range(CHUNK, size, CHUNK):
        stop = min(start + CHUNK, size)
        out[start:stop] = backend.asarray(rng.uniform(-bound, bound, stop - start), dtype, device)
    return out.reshape(shape)


def set_forget_bias(module: Any) -> None:
    """Apply ``module.spec.options.forget_bias`` to a layer's or cell's initial biases: the
    forget gate's rows of every ``bias_ih*`` set to it, those of ``bias_hh*`` to 0 (nothing
    when it is None).

    Raises
    ------
    ValueError
        For a forget_bias with ``bias=False``.
    """
    spec = module.spec
    value = spec.options.forget_bias
    if value is None:
        return
    if not module.bias:
        raise ValueError(f"forget_bias: expected None with bias=False (no bias to set), "
                         f"got {value!r}")
    k = spec.gate_names.index("f")
    H = module.hidden_size
    for name, p in module.parameters().items():
        if name.startswith(("bias_ih", "bias_hh")):
            rows = np.full(H, value if name.startswith("bias_ih") else 0.0)
            p[k * H : (k + 1) * H] = module.backend.asarray(rows, module.dtype)


def set_layer_norm(module: Any) -> None:
    """Start a layer-normalised LSTM's gains at 1 and its cell bias at 0
    (:data:`cuda_rnn.cellspec.LAYER_NORM_PARAMETERS`); nothing without layer_norm."""
    if not module.spec.options.layer_norm:
        return
    for name, p in module.parameters().items():
        for prefix, value in LAYER_NORM_PARAMETERS.items():
            if name.startswith(prefix):
                p[...] = module.backend.asarray(np.full(p.shape, value), module.dtype)
