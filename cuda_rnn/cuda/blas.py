"""Row-major GEMM through cublasGemmEx, for every storage type, with float accumulation.

cuBLAS is column-major; a row-major (r, c) matrix with row stride ld is the column-major
(c, r) matrix with leading dimension ld, so C = op(A) op(B) in row-major is computed as
C^T = op(B)^T op(A)^T in column-major: the operands swap and M, N swap.

gemmEx is used (not cupy.matmul) because it takes the output type separately from the input
type: bf16/fp16 inputs accumulate into float32 outputs, which the pointwise kernels read.
Float32 runs with CUBLAS_COMPUTE_32F, float64 with CUBLAS_COMPUTE_64F; the handle keeps
cuBLAS's default math mode, so float32 products do not use TF32.

cuBLAS is called through nvmath-python's bindings (``nvmath.bindings.cublas``), on a handle
of cuda_rnn's own (one per thread and device), not through ``cupy_backends.cuda.libs.cublas``:
CuPy's wrappers refuse to run while a stream captures a CUDA graph (cupy/cupy#6290), and the
"graph" algorithm captures the per-step GEMMs. nvmath and CuPy 14 both load libcublas through
``cuda.pathfinder.load_nvidia_dynamic_lib("cublas")``, which loads it once per process, so
both use the same library. The handle owns a workspace of :data:`WORKSPACE_BYTES`, as cuBLAS
asks for work captured into graphs (it then allocates nothing during capture);
cublasSetStream resets a handle's workspace to cuBLAS's default pool, so the workspace is set
again after every stream change.
"""
from __future__ import annotations

import functools
import threading
from types import ModuleType
from typing import Any

import numpy as np

from .dtypes import CUDA_DATA_TYPES, dtype_name
from .errors import KernelLaunchError

_OP_N, _OP_T = 0, 1
_COMPUTE_32F, _COMPUTE_64F = 68, 70
_GEMM_DEFAULT = -1
#: cuBLAS's recommended workspace on Hopper (32 MiB; 4 MiB suffices on earlier GPUs).
WORKSPACE_BYTES = 32 << 20
#: libraryPropertyType MAJOR_VERSION, for cublasGetProperty.
_MAJOR_VERSION = 0
_INSTALL_HINT = "pip install 'cuda_rnn[cuda13]' (or 'cuda_rnn[cuda12]')"


@functools.lru_cache(maxsize=1)
def cublas_bindings() -> ModuleType:
    """nvmath-python's cuBLAS bindings, with libcublas loaded: the module every call here
    goes through.

    Raises
    ------
    RuntimeError
        When nvmath-python is not installed, or it cannot load libcublas (no CUDA driver,
        no libcublas found).
    """
    try:
        from nvmath.bindings import cublas
    except ImportError as exc:
        raise RuntimeError(f"cuBLAS: cuda_rnn calls cuBLAS through nvmath-python, which does "
                           f"not import ({exc}); {_INSTALL_HINT}") from exc
    try:
        # The bindings load libcublas (and check the driver) at their first call: make it
        # here, so that a failure says what is missing instead of surfacing in a GEMM.
        cublas.get_property(_MAJOR_VERSION)
    except RuntimeError as exc:
        raise RuntimeError(f"cuBLAS could not be loaded through nvmath-python ({exc}); "
                           f"{_INSTALL_HINT}, on a machine with an NVIDIA driver") from exc
    return cublas


class _Handle:
    """A cuBLAS handle with its workspace, for the current thread and device."""

    def __init__(self) -> None:
        import cupy

        cublas = cublas_bindings()
        try:
            self.ptr = cublas.create()
        except cublas.cuBLASError as exc:
            raise KernelLaunchError(f"cuBLAS cublasCreate failed for cuda_rnn's handle: "
                                    f"{exc}") from exc
        self.workspace = cupy.empty(WORKSPACE_BYTES, cupy.uint8)
        self.stream: int | None = None

    def use_stream(self, stream: int) -> None:
        """Make the handle run on ``stream`` with its own workspace (a no-op when it already
        does: the handle is cuda_rnn's alone, so nothing else changes its stream)."""
        if stream != self.stream:
            cublas = cublas_bindings()
            cublas.set_stream(self.ptr, stream)
            cublas.set_workspace(self.ptr, self.workspace.data.ptr, WORKSPACE_BYTES)
            self.stream = stream


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
    step costs one cuBLAS call (two more when the current stream changed) and no Python
    array objects.

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
        self._compute = _COMPUTE_64F if in_name == "float64" else _COMPUTE_32F
        self._in_type = CUDA_DATA_TYPES[in_name]
        self._out_type = CUDA_DATA_TYPES[dtype_name(c.dtype)]
        self._lds = (_row_stride(b, what), _row_stride(a, what), _row_stride(c, what))
        self._ops = (_OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N)
        self._mnk = (n, m, k)
        self._cublas = cublas_bindings()
        self._handle = _handle()
        self.what = f"{what}: ({m}x{k}) @ ({k}x{n}) {in_name}"

    def __call__(self, a_ptr: int, b_ptr: int, c_ptr: int) -> None:
        """Run the product on the current stream; pointers are device addresses.

        Raises
        ------
        KernelLaunchError
            When cuBLAS refuses or fails the call, naming the product.
        """
        import cupy

        cublas, handle = self._cublas, self._handle
        (ld_b, ld_a, ld_c), (op_b, op_a), (n, m, k) = self._lds, self._ops, self._mnk
        try:
            handle.use_stream(cupy.cuda.get_current_stream().ptr)
            cublas.gemm_ex(handle.ptr, op_b, op_a, n, m, k, self._alpha.ctypes.data,
                           b_ptr, self._in_type, ld_b, a_ptr, self._in_type, ld_a,
                           self._beta.ctypes.data, c_ptr, self._out_type, ld_c,
                           self._compute, _GEMM_DEFAULT)
        except cublas.cuBLASError as exc:
            raise KernelLaunchError(f"cuBLAS call failed with {exc} for {self.what}") from exc


def matmul_into(a: Any, b: Any, c: Any, *, trans_a: bool = False, trans_b: bool = False,
                beta: float = 0.0, what: str = "GEMM") -> Any:
    """``c = op(a) @ op(b) + beta * c`` on CuPy arrays (one call, outside the step loops)."""
    GemmPlan(a, b, c, trans_a=trans_a, trans_b=trans_b, beta=beta, what=what)(
        a.data.ptr, b.data.ptr, c.data.ptr
    )
    return c
