"""A CPU stand-in for CuPy that runs cuda_rnn's GPU test suite on a machine without a GPU.

``pytest --cuda-sim -m gpu`` puts tests/cudasim first on ``sys.path``, so ``import cupy``
finds this package. What it simulates, and how faithfully:

- Device arrays are NumPy arrays behind a wrapper with CuPy's rules: no implicit conversion
  to NumPy (``__array__`` raises, as CuPy does; ``.get()`` copies out), CuPy functions and
  ufuncs refuse NumPy array operands, reductions return 0-d arrays, ``a.data.ptr`` is the
  address of the first element. Every allocation is registered, so a raw pointer handed to a
  kernel or to cuBLAS is checked to lie inside a live buffer.
- ``RawModule`` compiles the real kernels_cu/ sources with the host C++ compiler against
  tests/cudasim/include/cuda_sim.h and runs a launch as a loop over every (block, thread);
  before it runs, each argument's type is checked against the kernel's signature (pointer or
  value, element type), which a real launch never checks. A module built with
  ``enable_cooperative_groups`` runs each thread as a fiber (include/cuda_sim_fibers.h):
  __syncthreads, per-block dynamic shared memory, grid sync, and the tensor-core
  instructions of the persistent kernels computed from the PTX ISA's fragment layouts; a
  barrier not every thread reaches, a partial-warp mma, a write past the dynamic shared
  memory, or a grid that could not be resident at once fails the launch.
- ``nvmath.bindings.cublas.gemm_ex`` (tests/cudasim/nvmath) computes column-major
  ``C = alpha op(A) op(B) + beta C`` in NumPy from raw pointers and leading dimensions,
  refusing type combinations and leading dimensions cuBLAS refuses, never reading C when
  beta is 0; its handles keep a stream and a workspace, which set_stream resets.
- ``cupy_backends.cuda.libs`` loads cuBLAS lazily, as CuPy 14 does: importing the
  ``cublas`` submodule directly before that fails.
- Streams and CUDA graphs: capture records kernel launches, cuBLAS calls and ufuncs with an
  ``out=`` buffer, and replays them on ``Graph.launch``; any other array work during capture
  (an allocation, a copy, a host transfer) raises, since a captured step loop must not do it.

Not simulated: concurrency and timing, registers and the occupancy they allow, the memory
model (a fiber switch is a full fence), torch CUDA tensors and DLPack. Tests that need the
latter are marked ``hardware``.
"""
from __future__ import annotations

import bisect
import functools
import weakref
from types import ModuleType
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

#: The CuPy release whose behaviour the simulator follows. bfloat16 arrays are
#: ml_dtypes.bfloat16, as in CuPy 14 with NumPy >= 2.1.2.
__version__ = "14.2.0"

#: Device memory the simulator pretends to have; larger allocations raise OutOfMemoryError.
DEVICE_MEMORY_BYTES = 8 << 30

_starts: list[int] = []
_extents: dict[int, int] = {}


def _register(array: np.ndarray) -> None:
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    start = root.__array_interface__["data"][0]
    if start in _extents or root.nbytes == 0:
        return
    bisect.insort(_starts, start)
    _extents[start] = root.nbytes
    weakref.finalize(root, _unregister, start)


def _unregister(start: int) -> None:
    _extents.pop(start, None)
    i = bisect.bisect_left(_starts, start)
    if i < len(_starts) and _starts[i] == start:
        del _starts[i]


def check_pointer(ptr: int, nbytes: int, what: str) -> None:
    """Raise unless ``[ptr, ptr + nbytes)`` lies inside one live device allocation."""
    i = bisect.bisect_right(_starts, ptr) - 1
    if i >= 0:
        start = _starts[i]
        if ptr + nbytes <= start + _extents[start]:
            return
    raise ValueError(f"cudasim: {what} [{ptr:#x}, {ptr + nbytes:#x}) is not inside any live "
                     f"device allocation (a real GPU would read or write out of bounds)")


class MemoryPointer:
    """``a.data``: only its ``ptr`` (the device address of the first element) is simulated."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


def _wrap(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return ndarray._from_host(x)
    if isinstance(x, np.generic):
        return ndarray._from_host(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _unwrap(x: Any, allow_host: bool = False) -> Any:
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray) and x.ndim > 0 and not allow_host:
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, tuple):
        return tuple(_unwrap(v, allow_host) for v in x)
    if isinstance(x, list):
        return [_unwrap(v, allow_host) for v in x]
    if isinstance(x, dict):
        return {k: _unwrap(v, allow_host) for k, v in x.items()}
    return x


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 - CuPy's name
    """A simulated device array (see the module docstring)."""

    __array_priority__ = 100

    def __init__(self, shape: Any, dtype: Any = float) -> None:
        self._a = _allocate(shape, dtype)

    @classmethod
    def _from_host(cls, array: np.ndarray) -> ndarray:
        obj = cls.__new__(cls)
        obj._a = array
        _register(array)
        return obj

    @property
    def data(self) -> MemoryPointer:
        return MemoryPointer(self._a.__array_interface__["data"][0])

    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @property
    def dtype(self) -> np.dtype:
        return self._a.dtype

    @property
    def ndim(self) -> int:
        return self._a.ndim

    @property
    def size(self) -> int:
        return self._a.size

    @property
    def itemsize(self) -> int:
        return self._a.itemsize

    @property
    def nbytes(self) -> int:
        return self._a.nbytes

    @property
    def strides(self) -> tuple[int, ...]:
        return self._a.strides

    @property
    def device(self) -> Any:
        from .cuda import Device

        return Device(0)

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        from .cuda import enqueue, forbid_during_capture

        call = functools.partial(getattr(ufunc, method), *_unwrap(inputs), **_unwrap(kwargs))
        out = kwargs.get("out")
        if out is None:
            forbid_during_capture(f"ufunc {ufunc.__name__} into a new array")
            return _wrap(call())
        # Into existing buffers: a kernel launch, which a graph captures.
        enqueue(call)
        return out[0] if isinstance(out, tuple) and len(out) == 1 else out

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        from .cuda import forbid_during_capture

        forbid_during_capture(f"numpy function {func.__name__}")
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    def __getitem__(self, key: Any) -> Any:
        return _wrap(self._a[_unwrap(key, allow_host=True)])

    def __setitem__(self, key: Any, value: Any) -> None:
        from .cuda import forbid_during_capture

        forbid_during_capture("an array assignment")
        self._a[_unwrap(key, allow_host=True)] = _unwrap(value, allow_host=True)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (_wrap(v) for v in self._a)

    def __bool__(self) -> bool:
        return bool(self._a)

    def __float__(self) -> float:
        return float(self._a)

    def __int__(self) -> int:
        return int(self._a)

    def __repr__(self) -> str:
        return f"cudasim.{np.array_repr(self._a)}"

    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
        """Copy to a NumPy array (the device-to-host transfer)."""
        from .cuda import forbid_during_capture

        forbid_during_capture("a device-to-host copy (.get())")
        return np.array(self._a, order=order, copy=True)

    def set(self, arr: np.ndarray) -> None:
        """Copy a NumPy array in (the host-to-device transfer)."""
        self[...] = arr

    def __getattr__(self, name: str) -> Any:
        # No protocol attribute (__array_interface__, __array_struct__, __dlpack__, ...) may
        # reach the host array: NumPy would read device memory through it, which CuPy forbids.
        if name == "_a" or name.startswith("__"):
            raise AttributeError(name)
        target = getattr(self._a, name)
        if not callable(target):
            return _wrap(target)

        @functools.wraps(target)
        def method(*args: Any, **kwargs: Any) -> Any:
            from .cuda import forbid_during_capture

            if name not in _VIEW_METHODS:
                forbid_during_capture(f"ndarray.{name}")
            return _wrap(target(*_unwrap(args), **_unwrap(kwargs)))

        return method


#: Methods that only make views (no device work), so they are allowed during capture.
_VIEW_METHODS = frozenset({"reshape", "view", "transpose", "swapaxes", "squeeze"})


def _check_allocation(shape: Any, dtype: Any) -> None:
    from .cuda import forbid_during_capture, memory

    forbid_during_capture("a device allocation")
    count = int(np.prod(shape, dtype=np.int64)) if np.ndim(shape) else int(shape)
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > DEVICE_MEMORY_BYTES:
        raise memory.OutOfMemoryError(nbytes, 0, DEVICE_MEMORY_BYTES)


def device_memory_in_use() -> int:
    """Bytes held by live device allocations."""
    return sum(_extents.values())


class MemoryPool:
    """cupy.get_default_memory_pool(): the simulator frees at once, so it caches nothing."""

    def free_bytes(self) -> int:
        return 0

    def used_bytes(self) -> int:
        return device_memory_in_use()


_POOL = MemoryPool()


def get_default_memory_pool() -> MemoryPool:
    return _POOL


def _allocate(shape: Any, dtype: Any, fill: Any = None) -> np.ndarray:
    _check_allocation(shape, dtype)
    return np.empty(shape, dtype) if fill is None else np.full(shape, fill, dtype)


def empty(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray._from_host(_allocate(shape, dtype))


def zeros(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray._from_host(_allocate(shape, dtype, 0))


def ones(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray._from_host(_allocate(shape, dtype, 1))


def full(shape: Any, fill_value: Any, dtype: Any = None, order: str = "C") -> ndarray:
    if dtype is None:
        dtype = np.asarray(fill_value).dtype
    return ndarray._from_host(_allocate(shape, dtype, fill_value))


def empty_like(a: ndarray, dtype: Any = None) -> ndarray:
    return empty(a.shape, a.dtype if dtype is None else dtype)


def zeros_like(a: ndarray, dtype: Any = None) -> ndarray:
    return zeros(a.shape, a.dtype if dtype is None else dtype)


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K",
          ndmin: int = 0) -> ndarray:
    """A new device array from host or device data (host data is always copied)."""
    if isinstance(obj, ndarray):
        if not copy and (dtype is None or np.dtype(dtype) == obj.dtype):
            return obj
        source = obj._a
    else:
        source = _unwrap(obj, allow_host=True)
    _check_allocation(np.shape(source), source.dtype if dtype is None else dtype)
    return ndarray._from_host(np.array(source, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def asarray(a: Any, dtype: Any = None, order: Any = None) -> ndarray:
    return array(a, dtype, copy=False, order=order or "K")


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    a = asarray(a, dtype)
    if a._a.flags.c_contiguous:
        return a
    return array(a, order="C")


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None) -> np.ndarray:
    if isinstance(a, ndarray):
        return a.get(order=order)
    return np.asarray(a, order=order)


def get_array_module(*args: Any) -> ModuleType:
    import sys

    if any(isinstance(a, ndarray) for a in args):
        return sys.modules[__name__]
    return np


def from_dlpack(obj: Any) -> ndarray:
    raise NotImplementedError("cudasim: DLPack exchange with torch CUDA tensors is not simulated")


@functools.lru_cache(maxsize=None)
def _device_function(name: str) -> Any:
    target = getattr(np, name)

    @functools.wraps(target)
    def function(*args: Any, **kwargs: Any) -> Any:
        from .cuda import forbid_during_capture

        if isinstance(target, np.ufunc) and isinstance(kwargs.get("out"), ndarray):
            return kwargs["out"].__array_ufunc__(target, "__call__", *args, **kwargs)
        forbid_during_capture(f"cupy.{name}")
        return _wrap(target(*_unwrap(args), **_unwrap(kwargs)))

    return function


def __getattr__(name: str) -> Any:
    # Everything else CuPy mirrors from NumPy: dtypes and constants as they are, functions
    # and ufuncs on device arrays only.
    target = getattr(np, name)
    if isinstance(target, ModuleType):
        raise AttributeError(f"cudasim does not simulate cupy.{name}")
    if isinstance(target, type) or not callable(target):
        return target
    return _device_function(name)


from . import cuda  # noqa: E402  (cupy.cuda is an attribute of cupy, as in CuPy)
from ._raw import RawKernel, RawModule  # noqa: E402

__all__ = ["RawKernel", "RawModule", "array", "asarray", "ascontiguousarray", "asnumpy", "cuda",
           "empty", "empty_like", "full", "get_array_module", "get_default_memory_pool",
           "ndarray", "ones", "zeros", "zeros_like"]
