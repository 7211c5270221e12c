"""Row-major GEMM through cublasGemmEx, for every storage type, with float accumulation.

cuBLAS is column-major; a row-major (r, c) matrix with row stride ld is the column-major
(c, r) matrix with leading dimension ld, so C = op(A) op(B) in row-major is computed as
C^T = op(B)^T op(A)^T in column-major: the operands swap and M, N swap.

gemmEx is used (not cupy.matmul) because it takes the output type separately from the input
type: bf16/fp16 inputs accumulate into float32 outputs, which the pointwise kernels read.
Float32 runs with CUBLAS_COMPUTE_32F, float64 with CUBLAS_COMPUTE_64F; the handle keeps
cuBLAS's default math mode, so float32 products do not use TF32.

cuBLAS is called through ctypes on a handle of cuda_rnn's own (one per thread and device),
not through ``cupy_backends.cuda.libs.cublas``: CuPy's wrappers refuse to run while a stream
captures a CUDA graph (cupy/cupy#6290), and the "graph" algorithm captures the per-step GEMMs.
The library is the one CuPy loaded (found among the process's mapped files), so both share
one cuBLAS. Before every call the handle's stream is set to CuPy's current stream; the handle
owns a workspace of :data:`WORKSPACE_BYTES`, as cuBLAS asks for work captured into graphs
(it then allocates nothing during capture).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .dtypes import CUDA_DATA_TYPES, dtype_name
from .errors import KernelLaunchError

_OP_N, _OP_T = 0, 1
_COMPUTE_32F, _COMPUTE_64F = 68, 70
_GEMM_DEFAULT = -1
#: cuBLAS's recommended workspace on Hopper (32 MiB; 4 MiB suffices on earlier GPUs).
WORKSPACE_BYTES = 32 << 20
_STATUS_NAMES = {1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
                 7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH",
                 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
                 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED"}


def _loaded_cublas_path() -> str | None:
    """Path of the libcublas this process has mapped (CuPy loads it on import), if any."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and Path(fields[5]).name.startswith("libcublas.so"):
            return fields[5]
    return None


@functools.lru_cache(maxsize=1)
def cublas_library() -> ctypes.CDLL:
    """The cuBLAS shared library, with the prototypes used here.

    Raises
    ------
    RuntimeError
        When no cuBLAS can be found (CuPy 14 needs ``cupy-cuda13x[ctk]`` or a CUDA Toolkit).
    """
    import cupy_backends.cuda.libs.cublas  # noqa: F401  (importing it makes CuPy load libcublas)

    path = _loaded_cublas_path() or ctypes.util.find_library("cublas")
    if path is None:
        raise RuntimeError("cuBLAS: no libcublas is loaded or installed; install "
                           "'cupy-cuda13x[ctk]' (or a CUDA Toolkit)")
    lib = ctypes.CDLL(path)
    handle, ptr, i32 = ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int
    prototypes = {
        "cublasCreate_v2": (ctypes.POINTER(handle),),
        "cublasSetStream_v2": (handle, ptr),
        "cublasSetWorkspace_v2": (handle, ptr, ctypes.c_size_t),
        "cublasGemmEx": (handle, i32, i32, i32, i32, i32, ptr, ptr, i32, i32, ptr, i32, i32,
                         ptr, ptr, i32, i32, i32, i32),
    }
    for name, argtypes in prototypes.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return lib


def _check(status: int, call: str, what: str) -> None:
    if status != 0:
        raise KernelLaunchError(f"cuBLAS {call} failed with "
                                f"{_STATUS_NAMES.get(status, f'status {status}')} for {what}")


class _Handle:
    """A cuBLAS handle with its workspace, for the current thread and device."""

    def __init__(self) -> None:
        import cupy

        lib = cublas_library()
        self.ptr = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.ptr)), "cublasCreate", "cuda_rnn's handle")
        self.workspace = cupy.empty(WORKSPACE_BYTES, cupy.uint8)
        _check(lib.cublasSetWorkspace_v2(self.ptr, self.workspace.data.ptr, WORKSPACE_BYTES),
               "cublasSetWorkspace", "cuda_rnn's handle")


_handles = threading.local()


def _handle() -> _Handle:
    import cupy

    device = cupy.cuda.Device().id
    per_device = getattr(_handles, "per_device", None)
    if per_device is None:
        per_device = _handles.per_device = {}
    if device not in per_device:
        per_device[device] = _Handle()
    return per_device[device]


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
    step costs two cuBLAS calls (set the stream, multiply) and no Python array objects.

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
        # Host-mode scalars: cuBLAS reads them during the call (a captured GEMM keeps the
        # values), so they only need to live as long as the plan.
        self._alpha = np.array(1.0, scalar)
        self._beta = np.array(beta, scalar)
        compute = _COMPUTE_64F if in_name == "float64" else _COMPUTE_32F
        in_type = CUDA_DATA_TYPES[in_name]
        out_type = CUDA_DATA_TYPES[dtype_name(c.dtype)]
        ld_b, ld_a, ld_c = (_row_stride(b, what), _row_stride(a, what), _row_stride(c, what))
        self._lib = cublas_library()
        self._handle = _handle()
        # Every gemmEx argument but the three pointers, in cuBLAS's order (None marks them).
        self._args = (
            self._handle.ptr, _OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N,
            n, m, k, self._alpha.ctypes.data, None, in_type, ld_b, None, in_type, ld_a,
            self._beta.ctypes.data, None, out_type, ld_c, compute, _GEMM_DEFAULT,
        )
        self.what = f"{what}: ({m}x{k}) @ ({k}x{n}) {in_name}"

    def __call__(self, a_ptr: int, b_ptr: int, c_ptr: int) -> None:
        """Run the product on the current stream; pointers are device addresses."""
        import cupy

        lib, args = self._lib, self._args
        stream = cupy.cuda.get_current_stream().ptr
        _check(lib.cublasSetStream_v2(args[0], stream), "cublasSetStream", self.what)
        _check(lib.cublasGemmEx(*args[:7], b_ptr, *args[8:10], a_ptr, *args[11:14], c_ptr,
                                *args[15:]), "cublasGemmEx", self.what)


def matmul_into(a: Any, b: Any, c: Any, *, trans_a: bool = False, trans_b: bool = False,
                beta: float = 0.0, what: str = "GEMM") -> Any:
    """``c = op(a) @ op(b) + beta * c`` on CuPy arrays (one call, outside the step loops)."""
    GemmPlan(a, b, c, trans_a=trans_a, trans_b=trans_b, beta=beta, what=what)(
        a.data.ptr, b.data.ptr, c.data.ptr
    )
    return c
