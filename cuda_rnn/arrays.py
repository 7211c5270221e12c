"""Device-neutral array helpers: the array module of a device, and copies to NumPy.

This module imports nothing of the package, so that the modules low in the import graph
(losses, validation) use these helpers without loading the backends above them;
:mod:`cuda_rnn.backend` re-exports both.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def array_module(device: str) -> ModuleType:
    """NumPy for "cpu", CuPy for "cuda" (device must already be resolved, so CuPy imports)."""
    if device == "cuda":
        import cupy

        return cupy
    return np


def to_numpy(a: Any) -> np.ndarray:
    """Copy a CuPy array (or anything array-like) to a NumPy array."""
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return a.get()
    if hasattr(a, "detach"):  # a torch tensor
        return a.detach().cpu().numpy()
    return np.asarray(a)
