"""nvmath.bindings.cublas of the simulator: the handle calls cuda_rnn makes, and cublasGemmEx
modelled in NumPy on raw pointers.

As the real bindings do, every function takes plain integers (handles, streams, device and
host addresses) and raises :class:`cuBLASError` for a status other than success; no check of
stream capture is made (the real bindings make none either, unlike CuPy's wrappers). A
handle keeps its stream and its workspace; :func:`set_stream` resets the workspace to
cuBLAS's default pool, as the cuBLAS documentation says cublasSetStream does, so a GEMM
captured into a graph after a stream change without a new :func:`set_workspace` fails (a
simulator rule: the real library would allocate from its pool during capture).

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
import itertools
from dataclasses import dataclass

import numpy as np

import cupy_backends.cuda.libs as _libs
from cuda_rnn.cuda.dtypes import bfloat16_bits, bfloat16_to_float32
from cupy import check_pointer
from cupy.cuda import enqueue, stream_by_ptr

CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
CUBLAS_COMPUTE_32F, CUBLAS_COMPUTE_64F = 68, 70
_R_32F, _R_64F, _R_16F, _R_16BF = 0, 1, 2, 14
_STORAGE = {_R_32F: np.float32, _R_64F: np.float64, _R_16F: np.float16, _R_16BF: np.uint16}
#: (compute type) -> accepted (A/B type, C type) pairs of cublasGemmEx.
_SUPPORTED = {
    CUBLAS_COMPUTE_32F: {(_R_32F, _R_32F), (_R_16F, _R_16F), (_R_16F, _R_32F),
                         (_R_16BF, _R_16BF), (_R_16BF, _R_32F)},
    CUBLAS_COMPUTE_64F: {(_R_64F, _R_64F)},
}
_STATUS = {1: "CUBLAS_STATUS_NOT_INITIALIZED", 7: "CUBLAS_STATUS_INVALID_VALUE",
           13: "CUBLAS_STATUS_EXECUTION_FAILED", 15: "CUBLAS_STATUS_NOT_SUPPORTED"}
NOT_INITIALIZED, INVALID_VALUE, EXECUTION_FAILED, NOT_SUPPORTED = 1, 7, 13, 15


class cuBLASError(Exception):  # noqa: N801 - nvmath's name
    """nvmath.bindings.cublas.cuBLASError: ``status`` is the cublasStatus_t."""

    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        # The real message is cuBLAS's status string with the status name in parentheses.
        super().__init__(f"cudasim: {detail} ({_STATUS.get(status, status)})")


@dataclass
class _Handle:
    stream: int = 0
    workspace: int = 0
    workspace_bytes: int = 0


_handles: dict[int, _Handle] = {}
_next_handle = itertools.count(0x1000)


def _get(handle: int) -> _Handle:
    if handle not in _handles:
        raise cuBLASError(NOT_INITIALIZED, f"no cuBLAS handle {handle:#x}")
    return _handles[handle]


#: What cublasGetProperty reports (libraryPropertyType 0, 1, 2), as cuBLAS 13.0.0.
VERSION = (13, 0, 0)


def get_property(type: int) -> int:  # noqa: A002 - nvmath's parameter name
    """cublasGetProperty; like every first call of the real bindings, it loads libcublas
    (through cuda-pathfinder, as CuPy's lazy import does)."""
    _libs.load_library("cublas")
    if type not in (0, 1, 2):
        raise cuBLASError(INVALID_VALUE, f"library property {type}")
    return VERSION[type]


def create() -> int:
    """cublasCreate: a new handle on the legacy default stream with the default workspace."""
    _libs.load_library("cublas")
    handle = next(_next_handle)
    _handles[handle] = _Handle()
    return handle


def destroy(handle: int) -> None:
    _get(handle)
    del _handles[handle]


def set_stream(handle: int, stream_id: int) -> None:
    """cublasSetStream: also resets the handle's workspace to cuBLAS's default pool."""
    state = _get(handle)
    stream_by_ptr(stream_id)
    state.stream, state.workspace, state.workspace_bytes = stream_id, 0, 0


def set_workspace(handle: int, workspace: int, workspace_size_in_bytes: int) -> None:
    state = _get(handle)
    if workspace_size_in_bytes:
        check_pointer(workspace, workspace_size_in_bytes, "cublasSetWorkspace workspace")
    state.workspace, state.workspace_bytes = workspace, workspace_size_in_bytes


def _operand(ptr: int, dtype_code: int, rows: int, cols: int, ld: int, what: str) -> np.ndarray:
    """The column-major rows x cols matrix at ptr, as a writable NumPy view."""
    dtype = np.dtype(_STORAGE[dtype_code])
    count = ld * (cols - 1) + rows
    try:
        check_pointer(ptr, count * dtype.itemsize,
                      f"gemmEx operand {what} ({rows}x{cols}, ld {ld})")
    except ValueError as exc:
        raise cuBLASError(EXECUTION_FAILED, str(exc)) from exc
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


def gemm_ex(handle: int, transa: int, transb: int, m: int, n: int, k: int, alpha: int, a: int,
            atype: int, lda: int, b: int, btype: int, ldb: int, beta: int, c: int, ctype: int,
            ldc: int, compute_type: int, algo: int) -> None:
    """cublasGemmEx: C = alpha op(A) op(B) + beta C on the handle's stream (recorded into
    its graph while that stream captures).

    Raises
    ------
    cuBLASError
        For what cuBLAS refuses (types, leading dimensions, operations) and, when it runs,
        for an operand outside every live allocation; and (a simulator rule) for work
        captured into a graph on a handle without a workspace of its own.
    """
    state = _get(handle)
    if atype != btype or (atype, ctype) not in _SUPPORTED.get(compute_type, set()):
        raise cuBLASError(NOT_SUPPORTED,
                          f"types A {atype}, B {btype}, C {ctype} with compute {compute_type}")
    if transa not in (CUBLAS_OP_N, CUBLAS_OP_T) or transb not in (CUBLAS_OP_N, CUBLAS_OP_T):
        raise cuBLASError(INVALID_VALUE, f"transa {transa}, transb {transb}")
    a_shape = (m, k) if transa == CUBLAS_OP_N else (k, m)
    b_shape = (k, n) if transb == CUBLAS_OP_N else (n, k)
    if min(m, n, k) < 0 or lda < max(1, a_shape[0]) or ldb < max(1, b_shape[0]) \
            or ldc < max(1, m):
        raise cuBLASError(INVALID_VALUE,
                          f"m, n, k = {m}, {n}, {k} with lda {lda}, ldb {ldb}, ldc {ldc}")
    if stream_by_ptr(state.stream).is_capturing() and state.workspace_bytes == 0:
        raise cuBLASError(INVALID_VALUE, "a GEMM captured into a graph on a handle without "
                                         "its own workspace (cublasSetStream resets it)")
    compute = np.float64 if compute_type == CUBLAS_COMPUTE_64F else np.float32
    scalar = ctypes.c_double if compute is np.float64 else ctypes.c_float
    a_value = compute(scalar.from_address(alpha).value)
    b_value = compute(scalar.from_address(beta).value)

    def run() -> None:
        if m == 0 or n == 0:
            return
        out = _operand(c, ctype, m, n, ldc, "C")
        product = np.zeros((m, n), compute)
        if k > 0:
            left = _widen(_operand(a, atype, *a_shape, lda, "A"), atype, compute)
            right = _widen(_operand(b, btype, *b_shape, ldb, "B"), btype, compute)
            left = left if transa == CUBLAS_OP_N else left.T
            right = right if transb == CUBLAS_OP_N else right.T
            product = a_value * (left @ right)
        if b_value != 0:
            product = product + b_value * _widen(out, ctype, compute)
        _store(out, product, ctype)

    enqueue(run, state.stream)
