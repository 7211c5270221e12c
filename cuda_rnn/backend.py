"""Device and dtype resolution, and the :class:`Backend` that computes on a device.

``device="auto"`` resolves to the value of the ``CUDA_RNN_DEVICE`` environment variable when it
is set, otherwise to "cuda" when CuPy imports and sees a GPU, otherwise to "cpu" (quietly).
``device="cuda"`` without CuPy or a GPU raises a RuntimeError that says what to install.

A :class:`Backend` is what the layers, cells, model parts and optimizers compute with; they
never branch on the device. :class:`NumPyBackend` (here) runs the NumPy reference
(cuda_rnn.reference), :class:`~cuda_rnn.cuda.backend.CudaBackend` the CUDA step loops and
owns the CUDA policy: the ``algo`` choice, the graph cache, the device limits and the
arithmetic of 16-bit storage. :func:`for_device` gives one; a module keeps its own (the CUDA
graphs it captures live as long as it does).

The protocol
------------
device, xp
    "cpu" or "cuda", and the array module (NumPy or CuPy).
asarray(a, dtype)
    ``a`` as an array of the device in storage dtype ``dtype`` (copied over where needed).
storage_name(a), compute_dtype(dtype), compute(a)
    The storage dtype name of an array; the dtype arithmetic on storage ``dtype`` runs in
    (float32 for the 16-bit dtypes); ``a`` in that dtype (itself where it already is).
add(a, b), multiply(a, b)
    ``a + b`` and ``a * b`` of a storage array ``a`` and a storage or compute array ``b``,
    rounded once to ``a``'s storage dtype.
add_into(target, value), scale(target, factor), clip(target, low, high)
    In place on a storage array (a parameter or a gradient keeps its identity), computed in
    the compute dtype and rounded once.
check_algo(algo)
    ``algo`` if it names a step loop (:data:`cuda_rnn.cuda.algo.ALGOS`).
forward(spec, x, states, weights, lengths, algo=..., name=..., masks=...) -> :class:`Forward`
backward(spec, dy, dstates, cache, algo=..., name=...) -> :class:`Backward`
    One layer-direction of the cell described by ``spec`` over a time-major sequence, and
    its BPTT; ``states`` in the order of ``spec.states``, ``weights`` (and the returned
    gradients) in the order of ``spec.parameters``; ``masks`` the regularisers' masks the
    layer drew, by the cell functions' keywords ("zoneout", "zoneout_cell",
    "recurrent_mask"), None or {} for none.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from .arrays import array_module, to_numpy  # array_module: re-exported for the modules above
from .memory import host_available_bytes
from .cellspec import Backward, CellSpec, Forward
from .cuda.algo import check_algo
from .cuda.backend import CudaBackend
from .reference import gru, lstm, rnn

DEVICES = ("auto", "cpu", "cuda")
CPU_DTYPES = ("float32", "float64")
CUDA_DTYPES = ("float16", "bfloat16", "float32", "float64")

_INSTALL_HINT = (
    "install CuPy for your CUDA version (pip install 'cuda_rnn[cuda13]' or 'cuda_rnn[cuda12]') "
    "and run on a machine with an NVIDIA GPU"
)


@functools.lru_cache(maxsize=1)
def _cupy_status() -> tuple[ModuleType | None, str]:
    """Import CuPy once and report (module, reason it is unusable or "")."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy is not installed ({exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken: CuPy raises its own types
        return None, f"CuPy found no usable CUDA driver ({exc})"
    if count == 0:
        return None, "CuPy sees no CUDA device"
    return cupy, ""


def cuda_available() -> bool:
    """True when CuPy imports and at least one CUDA device is visible."""
    return _cupy_status()[0] is not None


def resolve_device(device: str) -> str:
    """Turn "auto" | "cpu" | "cuda" into "cpu" or "cuda", checking that CUDA can be used.

    Raises
    ------
    ValueError
        For a device name other than the three above.
    RuntimeError
        For "cuda" (asked for directly or through CUDA_RNN_DEVICE) without CuPy or a GPU.
    """
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
    if device == "auto":
        env = os.environ.get("CUDA_RNN_DEVICE", "").strip()
        if env:
            if env not in DEVICES:
                raise ValueError(f"CUDA_RNN_DEVICE: expected one of {DEVICES}, got {env!r}")
            device = env
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise RuntimeError(f"device='cuda' is not available: {_cupy_status()[1]}; {_INSTALL_HINT}")
    return device


def resolve_dtype(dtype: Any, device: str) -> str:
    """Check a dtype against what the device supports and return its name.

    The CPU computes in float32 or float64; CUDA also stores float16 and bfloat16 (computing
    in float32). Names and NumPy dtypes are both accepted.

    Raises
    ------
    ValueError
        For a dtype the device does not support.
    """
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except TypeError:
        name = repr(dtype)
    allowed = CUDA_DTYPES if device == "cuda" else CPU_DTYPES
    if name not in allowed:
        raise ValueError(f"dtype: expected one of {allowed} on device {device!r}, got {dtype!r}")
    return name


class Backend(Protocol):
    """What a module computes with on one device (see the module docstring)."""

    device: str
    xp: ModuleType

    def asarray(self, a: Any, dtype: str) -> Any: ...
    def storage_name(self, a: Any) -> str: ...
    def compute_dtype(self, dtype: str) -> np.dtype: ...
    def compute(self, a: Any) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def multiply(self, a: Any, b: Any) -> Any: ...
    def add_into(self, target: Any, value: Any) -> None: ...
    def scale(self, target: Any, factor: float) -> None: ...
    def clip(self, target: Any, low: float, high: float) -> None: ...
    def check_algo(self, algo: str) -> str: ...

    def forward(self, spec: CellSpec, x: Any, states: Sequence[Any], weights: Sequence[Any],
                lengths: Any, *, algo: str = "alternating", name: str = "",
                masks: Mapping[str, Any] | None = None) -> Forward: ...

    def backward(self, spec: CellSpec, dy: Any, dstates: Sequence[Any], cache: Any, *,
                 algo: str = "alternating", name: str = "") -> Backward: ...


def reference_functions(cell: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The NumPy reference of a cell: its ``<cell>_forward`` and ``<cell>_backward`` (looked
    up at each call, so that a patched module attribute is what runs)."""
    return {
        "rnn": (rnn.rnn_forward, rnn.rnn_backward),
        "lstm": (lstm.lstm_forward, lstm.lstm_backward),
        "gru": (gru.gru_forward, gru.gru_backward),
    }[cell]


def available_memory(device: str) -> int:
    """Bytes a forward on a resolved device could still allocate: free GPU memory on "cuda",
    available RAM on "cpu"."""
    if device == "cuda":
        from cuda_rnn.cuda.workspace import free_bytes

        return free_bytes()
    return host_available_bytes()


class NumPyBackend:
    """The CPU: the NumPy reference, in float32 or float64 (plain NumPy arithmetic is exact
    storage arithmetic there); ``algo`` is checked, not used."""

    device = "cpu"

    def __init__(self) -> None:
        self.xp = np

    def asarray(self, a: Any, dtype: str) -> Any:
        a = to_numpy(a)
        return a if a.dtype == dtype else a.astype(dtype)

    def storage_name(self, a: Any) -> str:
        return np.dtype(a.dtype).name

    def compute_dtype(self, dtype: str) -> np.dtype:
        return np.dtype(dtype)

    def compute(self, a: Any) -> Any:
        return a

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def multiply(self, a: Any, b: Any) -> Any:
        return a * b

    def add_into(self, target: Any, value: Any) -> None:
        target += value

    def scale(self, target: Any, factor: float) -> None:
        target *= factor

    def clip(self, target: Any, low: float, high: float) -> None:
        np.clip(target, low, high, out=target)

    def check_algo(self, algo: str) -> str:
        return check_algo(algo)

    def forward(self, spec: CellSpec, x: Any, states: Sequence[Any], weights: Sequence[Any],
                lengths: Any, *, algo: str = "alternating", name: str = "",
                masks: Mapping[str, Any] | None = None) -> Forward:
        positional, keywords = spec.function_arguments(tuple(weights))
        out = reference_functions(spec.cell)[0](x, *states, *positional, lengths, **keywords,
                                                **(masks or {}))
        return spec.split_forward(out)

    def backward(self, spec: CellSpec, dy: Any, dstates: Sequence[Any], cache: Any, *,
                 algo: str = "alternating", name: str = "") -> Backward:
        return spec.split_backward(reference_functions(spec.cell)[1](dy, *dstates, cache))


def asarray(a: Any, dtype: str, device: str) -> Any:
    """``a`` as an array of a resolved device in storage dtype ``dtype`` (see
    :meth:`Backend.asarray`)."""
    return for_device(device).asarray(a, dtype)


def for_device(device: str) -> Backend:
    """A new backend for a resolved device ("cpu" or "cuda")."""
    return CudaBackend() if device == "cuda" else NumPyBackend()


def for_array(a: Any) -> Backend:
    """A new backend for the device an array lives on (NumPy: "cpu", anything else "cuda")."""
    return for_device("cpu" if isinstance(a, np.ndarray) else "cuda")
