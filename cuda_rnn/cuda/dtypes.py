"""Storage dtypes on the GPU, and conversions between them.

float16, float32 and float64 are CuPy's own dtypes. bfloat16 is ``ml_dtypes.bfloat16``, the
type CuPy 14 takes for bfloat16; CuPy enables it only with NumPy >= 2.1.2 (below that NumPy
mis-promotes it, so CuPy registers no bfloat16 code at all; cupy/_util.pyx), and so does
this module. The kernels and cuBLAS (``CUDA_R_16BF``) only ever see the 16 bits; the
conversions here work on the bits and so never depend on CuPy's own bfloat16 arithmetic.

Pointwise math and GEMM accumulation run in float32 for the three narrow types and in
float64 for float64 (:func:`acc_dtype`).
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")

#: cudaDataType_t codes (library_types.h) of each storage dtype, for cublasGemmEx.
CUDA_DATA_TYPES: dict[str, int] = {"float16": 2, "bfloat16": 14, "float32": 0, "float64": 1}

_BF16_NAN_BITS = 0x7FC0


#: The oldest NumPy with which CuPy 14 enables bfloat16.
BFLOAT16_MIN_NUMPY = "2.1.2"


@functools.lru_cache(maxsize=1)
def _bfloat16_dtype() -> np.dtype:
    if np.lib.NumpyVersion(np.__version__) < BFLOAT16_MIN_NUMPY:
        raise RuntimeError(f"dtype 'bfloat16' on the GPU needs NumPy >= {BFLOAT16_MIN_NUMPY} "
                           f"(CuPy enables bfloat16 only from there), got NumPy "
                           f"{np.__version__}; pip install 'cuda_rnn[cuda13]'")
    try:
        import ml_dtypes
    except ImportError as exc:
        raise RuntimeError(f"dtype 'bfloat16' on the GPU needs ml_dtypes ({exc}); "
                           f"pip install 'cuda_rnn[cuda13]'") from exc
    return np.dtype(ml_dtypes.bfloat16)


def _check_name(name: str) -> None:
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype: expected one of {DTYPE_NAMES}, got {name!r}")


def storage_dtype(name: str) -> np.dtype:
    """The dtype CuPy arrays of storage type ``name`` carry.

    Raises
    ------
    ValueError
        For a name outside ``DTYPE_NAMES``.
    RuntimeError
        For "bfloat16" where CuPy has no bfloat16 (NumPy < 2.1.2 or no ml_dtypes).
    """
    _check_name(name)
    if name == "bfloat16":
        return _bfloat16_dtype()
    return np.dtype(name)


def dtype_name(dtype: Any) -> str:
    """The storage name ("float16", "bfloat16", ...) of an array dtype.

    Raises
    ------
    ValueError
        For a dtype that is no storage type.
    """
    dtype = np.dtype(dtype)
    if dtype.name == "bfloat16":
        return "bfloat16"
    if dtype.name in ("float16", "float32", "float64"):
        return dtype.name
    raise ValueError(f"dtype: expected a storage dtype {DTYPE_NAMES}, got {dtype}")


def acc_dtype(name: str) -> np.dtype:
    """The dtype pointwise math and GEMM accumulators use for storage type ``name``."""
    _check_name(name)
    return np.dtype(np.float64 if name == "float64" else np.float32)


def _array_module(a: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np
    import cupy

    return cupy


def bfloat16_bits(a: Any) -> Any:
    """Round a float32 array to bfloat16 (nearest, ties to even) and return the uint16 bits.

    Works on NumPy and CuPy arrays alike; NaN stays NaN, overflow rounds to infinity.
    """
    xp = _array_module(a)
    bits = a.view(xp.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return xp.where(xp.isnan(a), _BF16_NAN_BITS, rounded).astype(xp.uint16)


def bfloat16_to_float32(bits: Any) -> Any:
    """Widen uint16 bfloat16 bits to float32 (exact)."""
    xp = _array_module(bits)
    return (bits.astype(xp.uint32) << 16).view(xp.float32)


def to_float32(array: Any) -> Any:
    """A CuPy float32 copy of a storage array (bfloat16 widened from its bits).

    Raises
    ------
    ValueError
        For an array that is not in a storage dtype.
    """
    import cupy

    array = cupy.asarray(array)
    if dtype_name(array.dtype) == "bfloat16":
        return bfloat16_to_float32(array.view(cupy.uint16))
    return array.astype(cupy.float32)


def to_acc(array: Any) -> Any:
    """A CuPy array in the accumulator dtype of the array's storage type (a copy)."""
    name = dtype_name(array.dtype)
    if name == "float64":
        return array.copy()
    return to_float32(array)


def cast(array: Any, name: str) -> Any:
    """A CuPy array in storage type ``name`` from any float NumPy or CuPy array.

    bfloat16 is rounded from float32 (float64 input is rounded to float32 first). An array
    already in the target storage type is returned as is.

    Raises
    ------
    ValueError
        For an unknown ``name`` or a non-float input.
    """
    import cupy

    target = storage_dtype(name)
    source = np.dtype(array.dtype)
    if source.name != "bfloat16" and source.kind != "f":
        raise ValueError(f"array: expected a float array, got dtype {source}")
    array = cupy.asarray(array)
    if array.dtype == target:
        return array
    if dtype_name(array.dtype) == "bfloat16":
        array = to_float32(array)
    if name != "bfloat16":
        return array.astype(target)
    return bfloat16_bits(array.astype(cupy.float32)).view(target)


def nan_fill(array: Any) -> None:
    """Fill a storage (or accumulator) array with NaN, in place, whatever its float type."""
    if dtype_name(array.dtype) == "bfloat16":
        array.view(np.uint16).fill(_BF16_NAN_BITS)
    else:
        array.fill(np.nan)
