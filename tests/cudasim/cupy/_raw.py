"""RawModule and RawKernel of the simulator: CUDA C++ compiled by the host C++ compiler.

The module's source (exactly what cuda_rnn hands to NVRTC) is compiled against
tests/cudasim/include/cuda_sim.h together with one ``extern "C"`` entry point per name
expression, into a shared library cached under the system temp directory by a hash of
everything that goes into it (:func:`build_library`).
A launch checks each argument against the kernel's parameter types (read once from the
library), then passes CUDA-style ``void** params`` to the entry point, which runs the grid.

A module built with ``enable_cooperative_groups`` is launched cooperatively, as CuPy does:
every thread is a fiber (include/cuda_sim_fibers.h), its ``extern __shared__`` array is
defined here with the device's capacity, and a 1-D grid larger than can be resident at once
is cut down to what can, with CuPy 14's warning (a 2-D or 3-D one raises CuPy's ValueError).
Such a module also gets the definitions of the tensor-core instruction wrappers that
kernels_cu/persistent.cuh only declares in a host compile (:data:`PTX_DEFINITIONS`).

The Python signatures are CuPy 14.2's (cupy/_core/raw.pyx, cupy/cuda/function.pyx):
RawModule takes keyword arguments only, ``options`` as a tuple; a launch takes the grid and
the block as tuples (each dimension below 1 launches 1, as CuPy clamps it), ``shared_mem``
and ``stream`` by keyword.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import warnings
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from . import check_pointer, ndarray
from .cuda import (ATTRIBUTES, CompileException, CUDADriverError, Function, enqueue,
                   get_current_stream)

INCLUDE_DIR = Path(__file__).resolve().parent.parent / "include"
CACHE_DIR = Path(tempfile.gettempdir()) / "cuda_rnn_cudasim"
#: The host compiler; CXX overrides it.
COMPILER = os.environ.get("CXX", "g++")
#: No _FORTIFY_SOURCE: its checked longjmp refuses the jumps between fiber stacks.
CXXFLAGS = ("-std=c++17", "-O2", "-shared", "-fPIC", "-U_FORTIFY_SOURCE", "-x", "c++")

#: Type codes of cuda_sim.h's type_code<T>(); pointers add 100.
_ARRAY_CODES = {"float32": 1, "float64": 2, "float16": 3, "bfloat16": 4, "int32": 5,
                "int64": 6}
_SCALARS = {np.float32: (1, ctypes.c_float), np.float64: (2, ctypes.c_double),
            np.int32: (5, ctypes.c_int32), np.int64: (6, ctypes.c_int64)}
_CODE_NAMES = {0: "unsupported", 1: "float", 2: "double", 3: "__half", 4: "__nv_bfloat16",
               5: "int", 6: "long long"}
_POINTER = 100
_MAX_ARGS = 64
#: Dynamic shared memory a block gets without opting in (cudaFuncAttributeMaxDynamicSharedMemorySize).
DEFAULT_DYNAMIC_SHARED = 48 * 1024
#: Per SM of an H100: threads, resident blocks, shared memory, and what each block reserves.
SM_THREADS, SM_BLOCKS, SM_SHARED, SHARED_RESERVED = 2048, 32, 228 * 1024, 1024

#: cuda_rnn's wrappers of the PTX instructions (kernels_cu/persistent.cuh declares them for a
#: host compile), defined with the PTX ISA's semantics by include/cuda_sim_fibers.h.
PTX_DEFINITIONS = """
namespace cuda_rnn { namespace persistent {
uint32_t to_tf32(float x) { return cuda_sim::cvt_rna_tf32(x); }
void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    cuda_sim::mma_sync(cuda_sim::MmaShape::m16n8k8_tf32, d, a, b);
}
void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    cuda_sim::mma_sync(cuda_sim::MmaShape::m16n8k16_bf16, d, a, b);
}
} }
"""

_EXTERN_SHARED = re.compile(r"extern\s+__shared__[^;]*?(\w+)\s*\[\s*\]\s*;")
_BARRIER = re.compile(r"\b__syncthreads\s*\(")
#: RawKernel by its ``kernel.ptr``, for the occupancy query.
_KERNELS_BY_PTR: weakref.WeakValueDictionary[int, RawKernel] = weakref.WeakValueDictionary()


def _describe(code: int) -> str:
    if code >= _POINTER:
        return _CODE_NAMES.get(code - _POINTER, "?") + "*"
    return _CODE_NAMES.get(code, "?")


def _entry_points(names: tuple[str, ...], shared: str | None) -> str:
    """One launch and one signature function per name expression; with ``shared`` (the
    name of the module's extern __shared__ array) the launches are cooperative."""
    lines = ["\n// cudasim entry points",
             'extern "C" const char* cuda_sim_error() { return cuda_sim::last_error.c_str(); }']
    if shared is not None:
        lines.append(f"alignas(16) unsigned char {shared}"
                     f"[cuda_sim::kSharedCapacity + cuda_sim::kSharedGuard];")
    for i, name in enumerate(names):
        if shared is None:
            run = f"cuda_sim::launch(&{name}, g, b, p)"
        else:
            run = f"cuda_sim::launch_cooperative(&{name}, g, b, p, shared, {shared})"
        lines.append(
            f'extern "C" int cuda_sim_launch_{i}(const unsigned* g, const unsigned* b, '
            f"void** p, std::size_t shared) {{ return {run}; }}\n"
            f'extern "C" int cuda_sim_signature_{i}(int* codes, int capacity) {{ return '
            f"cuda_sim::signature(&{name}, codes, capacity); }}"
        )
    return "\n".join(lines) + "\n"


def _shared_array(code: str) -> str:
    """The name of the source's one extern __shared__ array (a stand-in when it has none)."""
    names = sorted(set(_EXTERN_SHARED.findall(code)))
    if len(names) > 1:
        raise CompileException(f"cudasim: one extern __shared__ array per module, got {names}")
    return names[0] if names else "cuda_sim_no_shared"


def _headers() -> str:
    return "".join(p.read_text() for p in sorted(INCLUDE_DIR.iterdir()))


def build_library(source: str, filename: str) -> ctypes.CDLL:
    """Compile C++ ``source`` (with include/ on the path) into a shared library named
    ``filename``, cached by a hash of everything that goes into it, and load it.

    Raises
    ------
    CompileException
        With the compiler's messages, or when there is no compiler.
    """
    if shutil.which(COMPILER) is None:
        raise CompileException(f"cudasim needs a host C++ compiler: {COMPILER!r} is not on PATH "
                               f"(set CXX)")
    key = hashlib.sha256("\0".join((source, _headers(), COMPILER, *CXXFLAGS)).encode())
    library = CACHE_DIR / key.hexdigest()[:24] / filename
    if not library.exists():
        library.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=library.parent) as work:
            src = Path(work) / "source.cpp"
            src.write_text(source)
            out = Path(work) / filename
            result = subprocess.run([COMPILER, *CXXFLAGS, "-I", str(INCLUDE_DIR), str(src),
                                     "-o", str(out)], capture_output=True, text=True)
            if result.returncode != 0:
                raise CompileException(f"cudasim: {COMPILER} could not compile {filename}:\n"
                                       f"{result.stderr}")
            os.replace(out, library)
    return ctypes.CDLL(str(library))


class RawModule:
    """cupy.RawModule over CUDA C++ source with name expressions (the form cuda_rnn uses)."""

    def __init__(self, *, code: str | None = None, path: str | None = None,
                 options: tuple = (), backend: str = "nvrtc", translate_cucomplex: bool = False,
                 enable_cooperative_groups: bool = False,
                 name_expressions: Any = None, jitify: Any = None) -> None:
        _require_type(options, tuple, "options")
        if (code is None) == (path is None):
            raise TypeError("Exactly one of `code` and `path` keyword arguments must be given.")
        if path is not None:
            raise NotImplementedError("cudasim: RawModule(path=...) is not simulated")
        self.code = code
        self.options = options
        self.name_expressions = None if name_expressions is None else tuple(name_expressions)
        self.enable_cooperative_groups = enable_cooperative_groups
        self._library: ctypes.CDLL | None = None

    def compile(self, log_stream: Any = None) -> None:
        if self._library is None:
            names = self.name_expressions or ()
            # Threads that wait for each other need fibers; every other module runs thread
            # after thread, which is far faster and computes the same.
            if self.enable_cooperative_groups or _BARRIER.search(self.code):
                tail = PTX_DEFINITIONS + _entry_points(names, _shared_array(self.code))
            else:
                tail = _entry_points(names, None)
            self._library = build_library(self.code + tail, "module.so")

    def get_function(self, name: str) -> RawKernel:
        if name not in (self.name_expressions or ()):
            raise CUDADriverError(f"CUDA_ERROR_NOT_FOUND: {name!r} is not among the module's "
                                  f"name expressions {self.name_expressions}")
        self.compile()
        return RawKernel(self._library, self.name_expressions.index(name), name,
                         self.enable_cooperative_groups)


def _require_type(value: Any, kind: type, what: str) -> None:
    # CuPy declares these parameters with a Cython type, which raises this TypeError.
    if not isinstance(value, kind):
        raise TypeError(f"Argument '{what}' has incorrect type (expected {kind.__name__}, got "
                        f"{type(value).__name__})")


def _dim3(value: tuple, what: str) -> tuple[int, int, int]:
    _require_type(value, tuple, what)
    # CuPy pads to three dimensions and launches at least 1 along each.
    return tuple(max(1, int(d)) for d in (value + (1, 1))[:3])


class RawKernel:
    """One compiled kernel; called as
    ``kernel(grid, block, args, *, shared_mem=0, stream=None)``."""

    def __init__(self, library: ctypes.CDLL, index: int, name: str,
                 cooperative: bool = False) -> None:
        self.name = name
        self.cooperative = cooperative
        self._max_dynamic_shared = DEFAULT_DYNAMIC_SHARED
        #: CuPy's Function object; its ``ptr`` is what the occupancy query takes.
        self.kernel = Function(id(self))
        _KERNELS_BY_PTR[id(self)] = self
        self._launch = getattr(library, f"cuda_sim_launch_{index}")
        self._launch.restype = ctypes.c_int
        self._error = library.cuda_sim_error
        self._error.restype = ctypes.c_char_p
        signature = getattr(library, f"cuda_sim_signature_{index}")
        codes = (ctypes.c_int * _MAX_ARGS)()
        count = signature(codes, _MAX_ARGS)
        self.parameter_codes = tuple(codes[:count])

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        return self._max_dynamic_shared

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        limit = ATTRIBUTES["MaxSharedMemoryPerBlockOptin"]
        if not 0 <= value <= limit:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: max dynamic shared memory "
                                  f"{value} bytes for {self.name} (the device allows {limit})")
        self._max_dynamic_shared = int(value)

    def blocks_per_sm(self, threads: int, shared_mem: int) -> int:
        """Blocks of this kernel one SM holds at once, from threads and shared memory (the
        simulator knows no register counts: __launch_bounds__ sets those on the GPU)."""
        if shared_mem > self._max_dynamic_shared:
            return 0
        return min(SM_THREADS // threads, SM_BLOCKS,
                   SM_SHARED // (shared_mem + SHARED_RESERVED))

    def _argument(self, i: int, arg: Any) -> tuple[int, Any]:
        expected = self.parameter_codes[i] if i < len(self.parameter_codes) else 0
        if arg is None:
            return (expected if expected >= _POINTER else 0), ctypes.c_void_p(0)
        if isinstance(arg, ndarray):
            ptr = arg.data.ptr
            if arg.size:
                check_pointer(ptr, arg.itemsize, f"{self.name} argument {i}")
            return _POINTER + _ARRAY_CODES.get(arg.dtype.name, 0), ctypes.c_void_p(ptr)
        if isinstance(arg, np.ndarray):
            if arg.size != 1:
                raise TypeError(f"You are trying to pass a numpy.ndarray of shape {arg.shape} "
                                f"as a kernel parameter. Only numpy.ndarrays of size one can "
                                f"be passed by value.")
            arg = arg.reshape(())[()]  # passed by value in its own dtype, as CuPy does
        # CuPy passes a Python int as int64 and a Python float as double.
        kind = {int: np.int64, float: np.float64}.get(type(arg), type(arg))
        if kind not in _SCALARS:
            raise TypeError(f"{self.name} argument {i}: unsupported type {type(arg)}")
        code, ctype = _SCALARS[kind]
        return code, ctype(arg)

    def __call__(self, grid: tuple, block: tuple, args: tuple, *, shared_mem: int = 0,
                 stream: Any = None) -> None:
        grid3, block3 = _dim3(grid, "grid"), _dim3(block, "block")
        threads = block3[0] * block3[1] * block3[2]
        if threads > 1024 or grid3[1] > 65535 or grid3[2] > 65535:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: invalid argument (grid {grid3}, "
                                  f"block {block3})")
        # CuPy iterates over any sequence of arguments; the simulator asks for the tuple
        # CuPy documents, so a list built by accident is caught here.
        if not isinstance(args, tuple):
            raise TypeError(f"args: expected a tuple, got {type(args)}")
        if shared_mem > self._max_dynamic_shared:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: {self.name} launched with "
                                  f"{shared_mem} bytes of dynamic shared memory, above its "
                                  f"maximum of {self._max_dynamic_shared} (set "
                                  f"max_dynamic_shared_size_bytes first)")
        if self.cooperative:
            grid3 = self._resident_grid(grid3, threads, shared_mem)
        stream_ptr = (get_current_stream() if stream is None else stream).ptr
        converted = [self._argument(i, a) for i, a in enumerate(args)]
        self._check_signature(args, [c for c, _ in converted])
        values = [v for _, v in converted]
        params = (ctypes.c_void_p * max(1, len(args)))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        g = (ctypes.c_uint * 3)(*grid3)
        b = (ctypes.c_uint * 3)(*block3)

        size = ctypes.c_size_t(shared_mem)

        def run() -> None:
            if self._launch(g, b, params, size) != 0:
                raise CUDADriverError(f"CUDA_ERROR_LAUNCH_FAILED: {self.name}: "
                                      f"{self._error().decode()}")

        # The ctypes objects must outlive a captured launch: the closure holds them.
        run.keep = (values, params, g, b)  # type: ignore[attr-defined]
        enqueue(run, stream_ptr)

    def _resident_grid(self, grid3: tuple[int, int, int], threads: int,
                       shared_mem: int) -> tuple[int, int, int]:
        """The grid CuPy 14 launches cooperatively: a 1-D grid larger than can be resident
        is cut down with a warning, a larger 2-D or 3-D one raises (cupy/cuda/function.pyx)."""
        resident = self.blocks_per_sm(threads, shared_mem) * ATTRIBUTES["MultiProcessorCount"]
        if grid3[0] * grid3[1] * grid3[2] <= resident:
            return grid3
        if grid3[1] != 1 or grid3[2] != 1:
            raise ValueError(f"The specified grid size ({grid3[0]} * {grid3[1]} * {grid3[2]}) "
                             f"exceeds the limit ({resident}).")
        warnings.warn(f"The grid size will be reduced from {grid3[0]} to {resident}, as the "
                      f"specified grid size exceeds the limit.", stacklevel=3)
        if resident == 0:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: {self.name}: no block of "
                                  f"{threads} threads with {shared_mem} bytes of shared memory "
                                  f"fits on an SM")
        return (resident, 1, 1)

    def _check_signature(self, args: tuple, codes: list[int]) -> None:
        # A real launch copies whatever bytes it is given; the simulator names the mismatch.
        if len(args) != len(self.parameter_codes):
            raise TypeError(f"{self.name}: expected {len(self.parameter_codes)} arguments, "
                            f"got {len(args)}")
        for i, (want, got) in enumerate(zip(self.parameter_codes, codes)):
            if want != got:
                given = type(args[i]).__name__
                if hasattr(args[i], "dtype"):
                    given += f" of {args[i].dtype}"
                raise TypeError(f"{self.name} argument {i}: the kernel takes "
                                f"{_describe(want)}, got {_describe(got)} ({given})")


def occupancy(func_ptr: int, block_size: int, dynamic_smem_size: int) -> int:
    """cuOccupancyMaxActiveBlocksPerMultiprocessor for a kernel of this simulator."""
    kernel = _KERNELS_BY_PTR.get(func_ptr)
    if kernel is None:
        raise CUDADriverError(f"CUDA_ERROR_INVALID_HANDLE: no kernel at {func_ptr:#x}")
    return kernel.blocks_per_sm(block_size, dynamic_smem_size)
