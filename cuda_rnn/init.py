"""Initial parameter values, drawn on the host so that a seed gives the same weights on every
device and dtype.

Values are drawn in float64 from the module's NumPy generator, :data:`CHUNK` elements at a
time, and each chunk is cast into the parameter's storage array on its device. The values are
exactly those of one float64 draw of the whole array cast afterwards, while the host holds at
most one chunk besides the parameter: building a large layer costs its parameters' bytes, not
the three times as much that a whole float64 draw and its cast would.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import backend
from .cellspec import LAYER_NORM_PARAMETERS, CellSpec

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


def initial_constants(spec: CellSpec, names: Iterable[str], hidden_size: int,
                      bias: bool) -> list[tuple[str, slice, float]]:
    """The parameter entries a cell's options fix at initialisation, as (name, rows of its
    first axis, value): with forget_bias the forget gate's rows of every ``bias_ih*`` (to it)
    and ``bias_hh*`` (to 0); with layer_norm every gain (1) and the cell bias (0), whole
    (:data:`cuda_rnn.cellspec.LAYER_NORM_PARAMETERS`). The layers and cells apply them here
    (:func:`set_initial_constants`), the torch drop-ins to their Parameters.

    Raises
    ------
    ValueError
        For a forget_bias with ``bias=False``.
    """
    out: list[tuple[str, slice, float]] = []
    value = spec.options.forget_bias
    if value is not None:
        if not bias:
            raise ValueError(f"forget_bias: expected None with bias=False (no bias to set), "
                             f"got {value!r}")
        k = spec.gate_names.index("f")
        rows = slice(k * hidden_size, (k + 1) * hidden_size)
        out += [(n, rows, value if n.startswith("bias_ih") else 0.0) for n in names
                if n.startswith(("bias_ih", "bias_hh"))]
    if spec.options.layer_norm:
        out += [(n, slice(None), v) for n in names for prefix, v in LAYER_NORM_PARAMETERS.items()
                if n.startswith(prefix)]
    return out


def set_initial_constants(module: Any) -> None:
    """Apply :func:`initial_constants` to a layer's or cell's freshly drawn parameters."""
    params = module.parameters()
    for name, rows, value in initial_constants(module.spec, params, module.hidden_size,
                                               module.bias):
        p = params[name]
        p[rows] = module.backend.asarray(np.full(p[rows].shape, value), module.dtype)
