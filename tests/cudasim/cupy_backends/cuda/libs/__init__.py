"""cupy_backends.cuda.libs of the simulator: CuPy 14's lazy loading of the CUDA libraries.

CuPy 14 loads libcublas through cuda-pathfinder when ``cupy_backends.cuda.libs.cublas`` is
reached as an attribute (``from cupy_backends.cuda.libs import cublas``); importing the
submodule directly (``import cupy_backends.cuda.libs.cublas``) before that fails, because the
extension module is linked against a libcublas.so.13 the dynamic loader cannot find on its
own. The simulator keeps that rule: :func:`load_library` stands for the pathfinder load, which
nvmath's bindings make too.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = ("cublas",)
#: Libraries "loaded" so far (by the lazy attribute or by nvmath's bindings).
loaded: set[str] = set()


def load_library(name: str) -> None:
    """Stand-in for ``cuda.pathfinder.load_nvidia_dynamic_lib(name)``."""
    loaded.add(name)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        load_library(name)
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
