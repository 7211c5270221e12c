"""A :class:`~cuda_rnn.cellspec.CellSpec` on the GPU: its buffers allocated for one call,
the key of its captured step loops and the names of its launches in messages.

:mod:`cuda_rnn.cuda.sequence` runs any spec: the input projection, the step loop of each
``algo`` and the GEMMs after backward; the buffers and kernel arguments it uses are the
spec's (see :mod:`cuda_rnn.cellspec`).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..cellspec import CellSpec
from .common import Dims
from .dtypes import acc_dtype, storage_dtype
from .graph import Buffers
from .workspace import empty


def allocate(spec: CellSpec, names: Iterable[str], dims: Dims, op: str) -> Buffers:
    """Fresh, uninitialised arrays for the named buffers of one call (NaN inside
    :func:`cuda_rnn.cuda.workspace.poisoned`)."""
    T, B, H, dtype = dims.T, dims.B, dims.H, dims.dtype
    sizes = {"T": T, "T+1": T + 1, "B": B, "H": H, "P": dims.P, "G": spec.gates * H,
             "C": peephole_size(spec, H)}
    types = {"storage": storage_dtype(dtype), "acc": acc_dtype(dtype), "int32": np.int32}
    out = {}
    for name in names:
        buffer = spec.buffer(name)
        out[name] = empty(tuple(sizes[s] for s in buffer.shape), types[buffer.kind],
                          f"{op} {buffer.what}")
    return out


def peephole_size(spec: CellSpec, H: int) -> int:
    """Length of the "w_ch" buffer: (G-1) * H with peepholes, else 1 (never read)."""
    return (spec.gates - 1) * H if spec.options.peephole else 1


def arguments(spec: CellSpec, direction: str, kind: str, buffers: Buffers) -> tuple[Any, ...]:
    """The arrays of one kernel's signature, aliases given the buffer they name (and the
    pointwise kernels' slots theirs, :attr:`CellSpec.pointwise_slots`); None (a null pointer)
    for a zoneout mask the call has not."""
    slots = spec.pointwise_slots if kind == spec.step_kind else {}
    names = [spec.aliases.get(n, slots.get(n, n)) for n in spec.args(direction, kind)]
    # CuPy 14 passes None as a null pointer by value (CIntptr(0)); CuPy 13 passed a garbage
    # address (cupy issue 9046), which the cupy>=14.2 requirement rules out.
    return tuple(buffers.get(n) if n in spec.zoneout else buffers[n] for n in names)


def graph_key(spec: CellSpec, direction: str, dims: Dims) -> tuple[Any, ...]:
    """What identifies a captured step loop of this cell in a graph cache."""
    return (spec.cell, spec.variant, direction, dims.T, dims.B, dims.H, dims.P, dims.dtype)


def describe_kernel(spec: CellSpec, direction: str, dims: Dims) -> str:
    """``"lstm_forward_pointwise<float32> (B=.., H=..)"`` for launch messages."""
    variant = f", {spec.variant}" if spec.variant else ""
    return (f"{spec.kernel_name(direction, spec.step_kind)}<{dims.dtype}> "
            f"(B={dims.B}, H={dims.H}{variant})")
