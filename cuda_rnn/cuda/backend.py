"""The CUDA backend: any cell's step loops on CuPy arrays, and the CUDA policy around them.

It implements the protocol of :mod:`cuda_rnn.backend` for device "cuda" and owns what the
device-neutral layers must not know: which step loop runs a call (:mod:`cuda_rnn.cuda.algo`),
the CUDA graphs captured for "graph" (one :class:`~cuda_rnn.cuda.graph.GraphCache` per
backend, so per module), the device limits the persistent planner reads, and the arithmetic
of 16-bit storage: bfloat16 may be raw uint16 bits (CuPy < 14) and CuPy's own 16-bit
arithmetic is not relied on, so every sum, product, scale and clip of a float16 or bfloat16
array runs in float32 and is rounded once to the storage dtype.

A forward runs the cell's ``<cell>_forward`` of cuda/<cell>.py, the twin of the NumPy
reference's, which runs :func:`cuda_rnn.cuda.sequence.forward` with the cell's
:class:`~cuda_rnn.cellspec.CellSpec`: per step ``<cell>_forward_pointwise`` (or the replay of
its graph, or one launch of ``<cell>_forward_persistent``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..cellspec import Backward, CellSpec, Forward
from . import gru, lstm, rnn
from .algo import AlgoChoice, check_algo, choose_algo
from .dtypes import acc_dtype, cast, dtype_name, to_float32
from .graph import GraphCache
from .persistent import DeviceLimits, device_limits

#: The regularisers' masks of the cell functions, as messages name them, and the buffer of
#: each in a forward's cache.
MASKS = {"recurrent_mask": "recurrent dropout mask", "zoneout": "zoneout mask of h",
         "zoneout_cell": "zoneout mask of c"}
MASK_BUFFERS = {"recurrent_mask": "rmask", "zoneout": "zh", "zoneout_cell": "zc"}

#: Storage dtypes whose arithmetic runs in float32 and is rounded once.
NARROW = ("float16", "bfloat16")


def cell_functions(cell: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The CUDA twin of a cell: its ``<cell>_forward`` and ``<cell>_backward`` (looked up at
    each call, so that a patched module attribute is what runs)."""
    return {
        "rnn": (rnn.rnn_forward, rnn.rnn_backward),
        "lstm": (lstm.lstm_forward, lstm.lstm_backward),
        "gru": (gru.gru_forward, gru.gru_backward),
    }[cell]


class CudaBackend:
    """Device "cuda": the CUDA twins of the NumPy reference (see :mod:`cuda_rnn.backend`)."""

    device = "cuda"

    def __init__(self) -> None:
        import cupy

        self.xp = cupy
        self.graphs = GraphCache()
        self._limits: DeviceLimits | None = None

    @property
    def limits(self) -> DeviceLimits:
        """The current device's limits, queried on first use."""
        if self._limits is None:
            self._limits = device_limits()
        return self._limits

    # ------------------------------------------------------------------ arrays and dtypes
    def asarray(self, a: Any, dtype: str) -> Any:
        """``a`` on the GPU in storage dtype ``dtype`` (no copy when it already is)."""
        return cast(a, dtype)

    def storage_name(self, a: Any) -> str:
        return dtype_name(a.dtype)

    def compute_dtype(self, dtype: str) -> np.dtype:
        return acc_dtype(dtype)

    def compute(self, a: Any) -> Any:
        """``a`` in its compute dtype: a float32 copy of 16-bit storage, else ``a`` itself."""
        return to_float32(a) if self.storage_name(a) in NARROW else a

    # ------------------------------------------------------------------ storage arithmetic
    def _rounded(self, op: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
        name = self.storage_name(a)
        if name not in NARROW:
            return op(a, b)
        b = self.compute(b) if hasattr(b, "dtype") else b
        return cast(op(to_float32(a), b), name)

    def add(self, a: Any, b: Any) -> Any:
        return self._rounded(lambda u, v: u + v, a, b)

    def multiply(self, a: Any, b: Any) -> Any:
        return self._rounded(lambda u, v: u * v, a, b)

    def add_into(self, target: Any, value: Any) -> None:
        if self.storage_name(target) in NARROW:
            target[...] = self.add(target, value)
        else:
            target += value

    def scale(self, target: Any, factor: float) -> None:
        if self.storage_name(target) in NARROW:
            target[...] = self.multiply(target, factor)
        else:
            target *= factor

    def clip(self, target: Any, low: float, high: float) -> None:
        name = self.storage_name(target)
        if name in NARROW:
            target[...] = cast(self.xp.clip(to_float32(target), low, high), name)
        else:
            self.xp.clip(target, low, high, out=target)

    # ------------------------------------------------------------------ the cells
    def check_algo(self, algo: str) -> str:
        return check_algo(algo)

    def choose(self, spec: CellSpec, algo: str, direction: str, steps: int, batch: int,
               hidden: int, dtype: str, masks: Sequence[str] = ()) -> AlgoChoice:
        """The step loop of one call (:func:`cuda_rnn.cuda.algo.choose_algo` on this device);
        ``masks``: the regularisers' masks the call has ("recurrent_mask", "zoneout",
        "zoneout_cell"), which the persistent kernels do not take."""
        described = [MASKS[m] for m in MASKS if m in masks]
        unsupported = spec.unsupported_persistent or (
            f"the persistent kernels take no {' or '.join(described)}" if described else "")
        return choose_algo(algo, spec.cell, direction, steps, batch, hidden, dtype,
                           self.limits, unsupported)

    def forward(self, spec: CellSpec, x: Any, states: Sequence[Any], weights: Sequence[Any],
                lengths: Any, *, algo: str = "alternating", name: str = "",
                masks: Mapping[str, Any] | None = None) -> Forward:
        """One layer-direction over a time-major sequence (``<cell>_forward``)."""
        masks = dict(masks or {})
        T, B, _ = x.shape
        choice = self.choose(spec, algo, "forward", T, B, weights[0].shape[0] // spec.gates,
                             self.storage_name(x), tuple(masks))
        arguments, keywords = spec.function_arguments(tuple(weights))
        out = cell_functions(spec.cell)[0](
            x, *states, *arguments, lengths, **keywords, **masks,
            name=name or f"cuda_rnn/{spec.cell}/forward", algo=choice.used, graphs=self.graphs)
        return spec.split_forward(out, choice.used, choice.reason)

    def backward(self, spec: CellSpec, dy: Any, dstates: Sequence[Any], cache: Any, *,
                 algo: str = "alternating", name: str = "") -> Backward:
        """BPTT over the matching forward (``<cell>_backward``)."""
        dims = cache.dims
        present = set(cache.zoned) | ({"rmask"} & set(cache.saved))
        choice = self.choose(spec, algo, "backward", dims.T, dims.B, dims.H, dims.dtype,
                             tuple(m for m, b in MASK_BUFFERS.items() if b in present))
        out = cell_functions(spec.cell)[1](
            dy, *dstates, cache, name=name or f"cuda_rnn/{spec.cell}/backward",
            algo=choice.used, graphs=self.graphs)
        return spec.split_backward(out, choice.used, choice.reason)
