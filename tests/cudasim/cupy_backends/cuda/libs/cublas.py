"""cuBLAS of the simulator: cublasGemmEx modelled in NumPy on raw pointers.

Two ways in, as on a real machine:
- the libcublas that cuda_rnn calls through ctypes: importing this module builds
  tests/cudasim/cublas_sim.cpp into a library named ``libcublas.so.13`` and loads it (so it is
  the libcublas mapped into the process, which is how cuda_rnn finds CuPy's); its
  cublasGemmEx forwards to :func:`gemm_model` with the stream set on the handle;
- CuPy's own wrapper :func:`gemmEx`, which like CuPy's refuses to run while the current
  stream captures a graph (cupy/cupy#6290).

The model: column-major, an r x c operand with leading dimension ld is element (i, j) at
ptr + (i + j*ld) elements; op(A) is m x k, op(B) is k x n, C is m x n. alpha and beta are read
from host pointers (CUBLAS_POINTER_MODE_HOST, the default) in the compute type's scalar type
at the call, so a captured GEMM keeps their values. With beta = 0, C is written without being
read, so NaN already in C does not leak into the result. Type combinations and leading
dimensions that cuBLAS refuses are refused; every operand's extent must lie in one live
device allocation.
"""
from __future__ import annotations

import ctypes
import sys
import traceback
from pathlib import Path

import numpy as np

from cuda_rnn.cuda.dtypes import bfloat16_bits, bfloat16_to_float32
from cupy import check_pointer
from cupy._raw import build_library
from cupy.cuda import current_capture, enqueue, stream_by_ptr

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_64F = 68, 70
CUBLAS_STATUS_INVALID_VALUE, CUBLAS_STATUS_EXECUTION_FAILED = 7, 13
CUBLAS_STATUS_NOT_SUPPORTED = 15
_R_32F, _R_64F, _R_16F, _R_16BF = 0, 1, 2, 14
_STORAGE = {_R_32F: np.float32, _R_64F: np.float64, _R_16F: np.float16, _R_16BF: np.uint16}
#: (compute type) -> accepted (A/B type, C type) pairs of cublasGemmEx.
_SUPPORTED = {
    CUBLAS_COMPUTE_32F: {(_R_32F, _R_32F), (_R_16F, _R_16F), (_R_16F, _R_32F),
                         (_R_16BF, _R_16BF), (_R_16BF, _R_32F)},
    CUBLAS_COMPUTE_64F: {(_R_64F, _R_64F)},
}
SOURCE = Path(__file__).resolve().parents[3] / "cublas_sim.cpp"


class CUBLASError(RuntimeError):
    """cupy_backends.cuda.libs.cublas.CUBLASError."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        super().__init__(f"CUBLAS_STATUS {status}: {detail}")


def _operand(ptr: int, dtype_code: int, rows: int, cols: int, ld: int, what: str) -> np.ndarray:
    """The column-major rows x cols matrix at ptr, as a writable NumPy view."""
    dtype = np.dtype(_STORAGE[dtype_code])
    count = ld * (cols - 1) + rows
    check_pointer(ptr, count * dtype.itemsize, f"gemmEx operand {what} ({rows}x{cols}, ld {ld})")
    buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    flat = np.frombuffer(buffer, dtype, count)
    return np.lib.stride_tricks.as_strided(flat, (rows, cols),
                                           (dtype.itemsize, ld * dtype.itemsize))


def _widen(matrix: np.ndarray, dtype_code: int, compute: type) -> np.ndarray:
    if dtype_code == _R_16BF:
        return bfloat16_to_float32(matrix).astype(compute)
    return matrix.astype(compute)


def _store(target: np.ndarray, values: np.ndarray, dtype_code: int) -> None:
    if dtype_code == _R_16BF:
        target[...] = bfloat16_bits(values.astype(np.float32))
    else:
        target[...] = values


def gemm_model(stream_ptr: int, workspace_bytes: int, transa: int, transb: int, m: int, n: int,
               k: int, alpha: int, a_ptr: int, a_type: int, lda: int, b_ptr: int, b_type: int,
               ldb: int, beta: int, c_ptr: int, c_type: int, ldc: int, compute_type: int,
               algo: int) -> None:
    """C = alpha op(A) op(B) + beta C on the stream ``stream_ptr`` (recorded if capturing).

    Raises
    ------
    CUBLASError
        For what cuBLAS refuses: unsupported types, bad leading dimensions or operations,
        and (a simulator rule) work captured into a graph on a handle without a workspace.
    """
    if a_type != b_type or (a_type, c_type) not in _SUPPORTED.get(compute_type, set()):
        raise CUBLASError(CUBLAS_STATUS_NOT_SUPPORTED,
                          f"types A {a_type}, B {b_type}, C {c_type} with compute {compute_type}")
    if transa not in (CUBLAS_OP_N, CUBLAS_OP_T) or transb not in (CUBLAS_OP_N, CUBLAS_OP_T):
        raise CUBLASError(CUBLAS_STATUS_INVALID_VALUE, f"transa {transa}, transb {transb}")
    a_shape = (m, k) if transa == CUBLAS_OP_N else (k, m)
    b_shape = (k, n) if transb == CUBLAS_OP_N else (n, k)
    if min(m, n, k) < 0 or lda < max(1, a_shape[0]) or ldb < max(1, b_shape[0]) \
            or ldc < max(1, m):
        raise CUBLASError(CUBLAS_STATUS_INVALID_VALUE,
                          f"m, n, k = {m}, {n}, {k} with lda {lda}, ldb {ldb}, ldc {ldc}")
    if stream_by_ptr(stream_ptr).is_capturing() and workspace_bytes == 0:
        raise CUBLASError(CUBLAS_STATUS_INVALID_VALUE,
                          "cudasim: a GEMM captured into a graph needs cublasSetWorkspace first")
    compute = np.float64 if compute_type == CUBLAS_COMPUTE_64F else np.float32
    scalar = ctypes.c_double if compute is np.float64 else ctypes.c_float
    a_value = compute(scalar.from_address(alpha).value)
    b_value = compute(scalar.from_address(beta).value)

    def run() -> None:
        if m == 0 or n == 0:
            return
        c = _operand(c_ptr, c_type, m, n, ldc, "C")
        product = np.zeros((m, n), compute)
        if k > 0:
            a = _widen(_operand(a_ptr, a_type, *a_shape, lda, "A"), a_type, compute)
            b = _widen(_operand(b_ptr, b_type, *b_shape, ldb, "B"), b_type, compute)
            a = a if transa == CUBLAS_OP_N else a.T
            b = b if transb == CUBLAS_OP_N else b.T
            product = a_value * (a @ b)
        if b_value != 0:
            product = product + b_value * _widen(c, c_type, compute)
        _store(c, product, c_type)

    enqueue(run, stream_ptr)


def gemmEx(handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int, A: int,
           Atype: int, lda: int, B: int, Btype: int, ldb: int, beta: int, C: int, Ctype: int,
           ldc: int, computeType: int, algo: int) -> None:  # noqa: N802, N803 - CuPy's names
    """CuPy's wrapper: runs on the current stream, and refuses while it captures."""
    if current_capture() is not None:
        raise NotImplementedError("calling cuBLAS API during stream capture is currently "
                                  "unsupported")
    gemm_model(0, 0, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C,
               Ctype, ldc, computeType, algo)


_GEMM_MODEL = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, *[ctypes.c_int] * 5, ctypes.c_void_p,
    ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int)


@_GEMM_MODEL
def _gemm_entry(stream, workspace_bytes, *args) -> int:  # type: ignore[no-untyped-def]
    # An exception cannot cross back into C: report it and return a status instead.
    try:
        gemm_model(stream or 0, workspace_bytes, *[a or 0 for a in args])
    except CUBLASError as exc:
        print(f"cudasim cublasGemmEx: {exc}", file=sys.stderr)
        return exc.status
    except Exception:  # noqa: BLE001 - any model failure is an execution failure
        traceback.print_exc()
        return CUBLAS_STATUS_EXECUTION_FAILED
    return 0


library = build_library(SOURCE.read_text(), "libcublas.so.13")
library.cuda_sim_set_gemm(_gemm_entry)

