"""Device buffers of the CUDA path: allocation with named errors, free memory, and NaN
poisoning for tests.

Every buffer a CUDA forward or backward writes (outputs, saved activations, scratch) comes
from :func:`empty`. Inside :func:`poisoned` each one starts filled with NaN, so a test that
compares against the reference proves every element is written.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from .dtypes import nan_fill
from .errors import DeviceMemoryError

_poison = False


@contextlib.contextmanager
def poisoned() -> Iterator[None]:
    """Fill every buffer from :func:`empty` with NaN while the context is open."""
    global _poison
    previous, _poison = _poison, True
    try:
        yield
    finally:
        _poison = previous


def empty(shape: tuple[int, ...], dtype: Any, what: str) -> Any:
    """An uninitialised CuPy array (float ones NaN-filled inside :func:`poisoned`).

    Raises
    ------
    DeviceMemoryError
        When the GPU cannot hold it; the message names ``what``, the shape and the bytes.
    """
    import cupy

    dtype = np.dtype(dtype)
    try:
        array = cupy.empty(shape, dtype)
    except cupy.cuda.memory.OutOfMemoryError as exc:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raise DeviceMemoryError(
            f"out of GPU memory allocating {what}: shape {tuple(shape)}, dtype {dtype}, "
            f"{nbytes} bytes ({exc})"
        ) from exc
    if _poison and dtype.kind != "i":
        nan_fill(array)
    return array


def free_bytes() -> int:
    """Bytes a new allocation could get on the current device: what the driver has free plus
    what CuPy's memory pool holds unused (blocks freed by earlier calls, kept for reuse)."""
    import cupy

    free, _total = cupy.cuda.runtime.memGetInfo()
    return int(free) + int(cupy.get_default_memory_pool().free_bytes())
