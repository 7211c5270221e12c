"""What a cell's kernels need, as data: the buffers they use and the order of their arguments.

cuda/{lstm,gru,rnn}.py each describe their cell with one :class:`CellSpec` (one per
nonlinearity for the RNN), and :mod:`cuda_rnn.cuda.sequence` runs any spec: the input
projection, the step loop of each ``algo``, and the GEMMs after backward. Every buffer a step
loop touches has a name; the common ones are in :data:`COMMON_BUFFERS`, a cell's own in its
spec, and a kernel's arguments are listed by those names in the order of its C++ signature.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import Dims
from .dtypes import acc_dtype, storage_dtype
from .graph import Buffers
from .workspace import empty


@dataclass(frozen=True)
class Buffer:
    """One device buffer of a step loop.

    shape : sizes by symbol: "T", "T+1", "B", "H", or "G" (gates * H).
    kind : element type: "storage" (the call's dtype), "acc" (its accumulator dtype: float32
        for the 16-bit dtypes) or "int32".
    what : what it holds, for out-of-memory messages.
    """

    shape: tuple[str, ...]
    kind: str
    what: str

    def allocate(self, dims: Dims, gates: int, op: str) -> Any:
        """An uninitialised array of this buffer for one call (NaN inside ``poisoned``)."""
        T, B, _, H, dtype = dims
        sizes = {"T": T, "T+1": T + 1, "B": B, "H": H, "G": gates * H}
        types = {"storage": storage_dtype(dtype), "acc": acc_dtype(dtype), "int32": np.int32}
        return empty(tuple(sizes[s] for s in self.shape), types[self.kind], f"{op} {self.what}")


#: Buffers every cell's step loops use, whatever the cell.
COMMON_BUFFERS: dict[str, Buffer] = {
    "xp": Buffer(("T", "B", "G"), "acc", "input projection Xp"),
    "hp": Buffer(("B", "G"), "acc", "recurrent projection Hp"),
    "w_hh": Buffer(("G", "H"), "storage", "W_hh"),
    "lengths": Buffer(("B",), "int32", "lengths"),
    "h": Buffer(("T+1", "B", "H"), "storage", "hidden states h"),
    "y": Buffer(("T", "B", "H"), "storage", "output y"),
    "dy": Buffer(("T", "B", "H"), "storage", "dy"),
    "dh": Buffer(("B", "H"), "acc", "dh"),
}


@dataclass(frozen=True)
class CellSpec:
    """One cell as the step loops see it.

    cell : "lstm", "gru" or "rnn": names its kernels (``<cell>_forward_pointwise`` in
        kernels_cu/<cell>.cu, ``<cell>_forward_persistent``) and its messages.
    gates : G / H, the rows of W_hh per hidden unit.
    states : the recurrent states, each a (T+1, B, H) buffer whose row 0 is the initial state
        and row t the state after step t; their gradients are the (B, H) buffers "d" + name.
    buffers : the cell's own buffers, beyond :data:`COMMON_BUFFERS`.
    saved : forward buffers that backward reads ("h" always: dW_hh = sum_t dG_t^T h_{t-1}).
    grads : backward's per-step outputs: the gradient with respect to the input projection,
        then the one with respect to the recurrent projection (the same name when they are
        one array, as for the LSTM and the RNN).
    forward_args, backward_args : the pointwise kernels' array arguments in order; after them
        come t, B, H and then ``extra_args``.
    persistent_forward_args, persistent_backward_args : the persistent kernels' array
        arguments in order (empty without a persistent kernel); after them come T, B, H and
        the plan's layout.
    bias_in_kernel : b_hh goes to the kernels as the (G,) buffer "bh" instead of into Xp (the
        GRU's reset gate scales b_hn).
    extra_args : trailing int arguments of both pointwise kernels.
    variant : names ``extra_args`` in graph keys and launch messages ("" when there are none).
    """

    cell: str
    gates: int
    states: tuple[str, ...]
    buffers: Mapping[str, Buffer]
    saved: tuple[str, ...]
    grads: tuple[str, str]
    forward_args: tuple[str, ...]
    backward_args: tuple[str, ...]
    persistent_forward_args: tuple[str, ...] = ()
    persistent_backward_args: tuple[str, ...] = ()
    bias_in_kernel: bool = False
    extra_args: tuple[int, ...] = ()
    variant: str = ""

    def buffer(self, name: str) -> Buffer:
        """The description of the buffer ``name``, the cell's own or a common one."""
        return self.buffers[name] if name in self.buffers else COMMON_BUFFERS[name]

    def allocate(self, names: Iterable[str], dims: Dims, op: str) -> Buffers:
        """Fresh arrays for the named buffers of one call."""
        return {name: self.buffer(name).allocate(dims, self.gates, op) for name in names}

    def names(self, direction: str) -> tuple[str, ...]:
        """Every buffer the step loops of ``direction`` ("forward" or "backward") touch."""
        if direction == "forward":
            args = self.forward_args + self.persistent_forward_args + self.states
        else:
            args = (self.backward_args + self.persistent_backward_args
                    + tuple(f"d{s}" for s in self.states))
        return tuple(dict.fromkeys(args + ("w_hh",)))

    def key(self, direction: str, dims: Dims) -> tuple[Any, ...]:
        """What identifies a captured step loop of this cell in a graph cache."""
        T, B, _, H, dtype = dims
        return (self.cell, self.variant, direction, T, B, H, dtype)

    def describe_kernel(self, direction: str, dims: Dims) -> str:
        """``"lstm_forward_pointwise<float32> (B=.., H=..)"`` for launch messages."""
        variant = f", {self.variant}" if self.variant else ""
        return (f"{self.cell}_{direction}_pointwise<{dims.dtype}> "
                f"(B={dims.B}, H={dims.H}{variant})")
