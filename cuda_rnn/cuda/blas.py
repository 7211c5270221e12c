"""Row-major GEMM through cublasGemmEx, for every storage type, with float accumulation.

cuBLAS is column-major; a row-major (r, c) matrix with row stride ld is the column-major
(c, r) matrix with leading dimension ld, so C = op(A) op(B) in row-major is computed as
C^T = op(B)^T op(A)^T in column-major: the operands swap and M, N swap.

gemmEx is used (not cupy.matmul) because it takes the output type separately from the input
type: bf16/fp16 inputs accumulate into float32 outputs, which the pointwise kernels read.
Float32 runs with CUBLAS_COMPUTE_32F (no TF32), float64 with CUBLAS_COMPUTE_64F.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .dtypes import CUDA_DATA_TYPES, dtype_name
from .errors import KernelLaunchError

_OP_N, _OP_T = 0, 1
_COMPUTE_32F, _COMPUTE_64F = 68, 70
_GEMM_DEFAULT = -1


def _row_stride(a: Any, what: str) -> int:
    if a.ndim != 2 or a.strides[1] != a.itemsize or a.strides[0] % a.itemsize:
        raise ValueError(
            f"{what}: expected a 2-D array with unit column stride, got shape {a.shape} "
            f"strides {a.strides}"
        )
    return max(a.strides[0] // a.itemsize, a.shape[1], 1)


class GemmPlan:
    """``C = alpha op(A) op(B) + beta C`` for fixed shapes, strides and types.

    Built once from example arrays, then called per step with raw device pointers, so a
    step costs one cuBLAS call and no Python array objects.

    Parameters
    ----------
    a, b, c : 2-D CuPy arrays (row-major, unit column stride) of the shapes every call uses;
        a and b in one storage type, c in that type or its float32/float64 accumulator.
    trans_a, trans_b : use A^T / B^T.
    beta : 0 overwrites C (its old contents are never read), 1 accumulates into it.
    what : names the product in errors, e.g. ``"lstm recurrent GEMM h_{t-1} W_hh^T"``.
    """

    def __init__(self, a: Any, b: Any, c: Any, *, trans_a: bool = False,
                 trans_b: bool = False, beta: float = 0.0, what: str = "GEMM") -> None:
        from cupy.cuda import device

        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k != k2 or c.shape != (m, n):
            raise ValueError(
                f"{what}: shapes do not chain: op(A) {(m, k)}, op(B) {(k2, n)}, C {c.shape}"
            )
        in_name = dtype_name(a.dtype)
        if dtype_name(b.dtype) != in_name:
            raise ValueError(f"{what}: A and B differ in dtype: {a.dtype} and {b.dtype}")
        scalar = np.float64 if in_name == "float64" else np.float32
        self._alpha = np.array(1.0, scalar)
        self._beta = np.array(beta, scalar)
        self._compute = _COMPUTE_64F if in_name == "float64" else _COMPUTE_32F
        self._in_type = CUDA_DATA_TYPES[in_name]
        self._out_type = CUDA_DATA_TYPES[dtype_name(c.dtype)]
        self._ops = (_OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N)
        self._mnk = (n, m, k)
        self._lds = (_row_stride(b, what), _row_stride(a, what), _row_stride(c, what))
        self._handle = device.get_cublas_handle()
        self.what = f"{what}: ({m}x{k}) @ ({k}x{n}) {in_name}"

    def __call__(self, a_ptr: int, b_ptr: int, c_ptr: int) -> None:
        """Run the product on the current stream; pointers are device addresses."""
        from cupy_backends.cuda.libs import cublas

        ld_b, ld_a, ld_c = self._lds
        try:
            cublas.gemmEx(
                self._handle, self._ops[0], self._ops[1], *self._mnk,
                self._alpha.ctypes.data, b_ptr, self._in_type, ld_b,
                a_ptr, self._in_type, ld_a,
                self._beta.ctypes.data, c_ptr, self._out_type, ld_c,
                self._compute, _GEMM_DEFAULT,
            )
        except cublas.CUBLASError as exc:
            raise KernelLaunchError(f"cuBLAS gemmEx failed for {self.what}: {exc}") from exc


def matmul_into(a: Any, b: Any, c: Any, *, trans_a: bool = False, trans_b: bool = False,
                beta: float = 0.0, what: str = "GEMM") -> Any:
    """``c = op(a) @ op(b) + beta * c`` on CuPy arrays (one call, outside the step loops)."""
    GemmPlan(a, b, c, trans_a=trans_a, trans_b=trans_b, beta=beta, what=what)(
        a.data.ptr, b.data.ptr, c.data.ptr
    )
    return c
