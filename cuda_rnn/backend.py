"""Backend selection: NumPy on any machine, CuPy on an NVIDIA GPU.

``device="auto"`` resolves to the value of the ``CUDA_RNN_DEVICE`` environment variable when it
is set, otherwise to "cuda" when CuPy imports and sees a GPU, otherwise to "cpu" (quietly).
``device="cuda"`` without CuPy or a GPU raises a RuntimeError that says what to install.
"""
from __future__ import annotations

import functools
import importlib
import operator
import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from .memory import host_available_bytes

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


def array_module(device: str) -> ModuleType:
    """NumPy for "cpu", CuPy for "cuda" (device must already be resolved)."""
    if device == "cuda":
        return _cupy_status()[0]
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy a CuPy array (or anything array-like) to a NumPy array."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    if hasattr(a, "detach"):  # a torch tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)


def cell_module(cell: str, device: str) -> ModuleType:
    """The module holding ``<cell>_forward`` / ``<cell>_backward`` for a resolved device.

    "cpu" gives the NumPy reference (cuda_rnn.reference.<cell>), "cuda" its CUDA twin
    (cuda_rnn.cuda.<cell>); both share one signature, so callers never branch on the device.
    """
    package = "cuda" if device == "cuda" else "reference"
    return importlib.import_module(f"cuda_rnn.{package}.{cell}")


def asarray(a: Any, dtype: str, device: str) -> Any:
    """``a`` as an array of the device (NumPy or CuPy) in storage dtype ``dtype``.

    NumPy input to a "cuda" layer is copied over; CuPy input to a "cpu" layer is copied back.
    Arrays already of the right kind and dtype are returned as they are (no copy).
    """
    if device == "cuda":
        from cuda_rnn.cuda import cast

        return cast(a, dtype)
    a = to_numpy(a)
    return a if a.dtype == dtype else a.astype(dtype)


def available_memory(device: str) -> int:
    """Bytes a forward on a resolved device could still allocate: free GPU memory on "cuda",
    available RAM on "cpu"."""
    if device == "cuda":
        from cuda_rnn.cuda.workspace import free_bytes

        return free_bytes()
    return host_available_bytes()


def _widened(dtype: str, device: str) -> bool:
    # bfloat16 on the GPU may be stored as raw uint16 bits (CuPy < 14), and CuPy's own
    # bfloat16 arithmetic is not relied on: such sums and products run in float32.
    return device == "cuda" and dtype == "bfloat16"


def _storage_op(op: Callable[[Any, Any], Any], a: Any, b: Any, dtype: str, device: str) -> Any:
    if _widened(dtype, device):
        from cuda_rnn.cuda.dtypes import cast, to_float32

        return cast(op(to_float32(a), to_float32(b)), dtype)
    return op(a, b)


def add(a: Any, b: Any, dtype: str, device: str) -> Any:
    """``a + b`` of two storage arrays, rounded once to ``dtype``."""
    return _storage_op(operator.add, a, b, dtype, device)


def multiply(a: Any, b: Any, dtype: str, device: str) -> Any:
    """``a * b`` of two storage arrays, rounded once to ``dtype``."""
    return _storage_op(operator.mul, a, b, dtype, device)


def add_into(target: Any, value: Any, dtype: str, device: str) -> None:
    """``target += value`` in place (a gradient accumulator keeps its identity)."""
    if _widened(dtype, device):
        target[...] = add(target, value, dtype, device)
    else:
        target += value
