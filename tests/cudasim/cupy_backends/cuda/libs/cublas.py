"""cupy_backends.cuda.libs.cublas of the simulator: only the error type cuda_rnn catches.

Importing it before libcublas was loaded fails as CuPy 14's does (see the package docstring).
"""
from __future__ import annotations

from . import loaded

if "cublas" not in loaded:
    raise ImportError("libcublas.so.13: cannot open shared object file: No such file or "
                      "directory (cudasim: reach it as `from cupy_backends.cuda.libs import "
                      "cublas`, which loads the library first, as CuPy 14 does)")


class CUBLASError(RuntimeError):
    """cupy_backends.cuda.libs.cublas.CUBLASError."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"CUBLAS_STATUS {status}")
