"""RawModule and RawKernel of the simulator: CUDA C++ compiled by the host C++ compiler.

The module's source (exactly what cuda_rnn hands to NVRTC) is compiled against
tests/cudasim/include/cuda_sim.h together with one ``extern "C"`` entry point per name
expression, into a shared library cached under the system temp directory by a hash of
everything that goes into it (:func:`build_library`, also used for the simulated libcublas).
A launch checks each argument against the kernel's parameter types (read once from the
library), then passes CUDA-style ``void** params`` to the entry point, which runs the grid.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import check_pointer, ndarray
from .cuda import CompileException, CUDADriverError, enqueue

INCLUDE_DIR = Path(__file__).resolve().parent.parent / "include"
CACHE_DIR = Path(tempfile.gettempdir()) / "cuda_rnn_cudasim"
#: The host compiler; CXX overrides it.
COMPILER = os.environ.get("CXX", "g++")
CXXFLAGS = ("-std=c++17", "-O2", "-shared", "-fPIC", "-x", "c++")

#: Type codes of cuda_sim.h's type_code<T>(); pointers add 100.
_ARRAY_CODES = {"float32": 1, "float64": 2, "float16": 3, "bfloat16": 4, "uint16": 4,
                "int32": 5, "int64": 6}
_SCALARS = {np.float32: (1, ctypes.c_float), np.float64: (2, ctypes.c_double),
            np.int32: (5, ctypes.c_int32), np.int64: (6, ctypes.c_int64)}
_CODE_NAMES = {0: "unsupported", 1: "float", 2: "double", 3: "__half", 4: "__nv_bfloat16",
               5: "int", 6: "long long"}
_POINTER = 100
_MAX_ARGS = 64


def _describe(code: int) -> str:
    if code >= _POINTER:
        return _CODE_NAMES.get(code - _POINTER, "?") + "*"
    return _CODE_NAMES.get(code, "?")


def _entry_points(names: tuple[str, ...]) -> str:
    lines = ["\n// cudasim entry points"]
    for i, name in enumerate(names):
        lines.append(
            f'extern "C" void cuda_sim_launch_{i}(const unsigned* g, const unsigned* b, '
            f"void** p) {{ cuda_sim::launch(&{name}, g, b, p); }}\n"
            f'extern "C" int cuda_sim_signature_{i}(int* codes, int capacity) {{ return '
            f"cuda_sim::signature(&{name}, codes, capacity); }}"
        )
    return "\n".join(lines) + "\n"


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

    def __init__(self, code: str | None = None, path: str | None = None, options: tuple = (),
                 backend: str = "nvrtc", translate_cucomplex: bool = False,
                 enable_cooperative_groups: bool = False,
                 name_expressions: tuple[str, ...] | None = None, jitify: bool = False) -> None:
        if code is None:
            raise NotImplementedError("cudasim: RawModule(path=...) is not simulated")
        self.code = code
        self.options = tuple(options)
        self.name_expressions = tuple(name_expressions or ())
        self.enable_cooperative_groups = enable_cooperative_groups
        self._library: ctypes.CDLL | None = None

    def compile(self, log_stream: Any = None) -> None:
        if self.enable_cooperative_groups:
            raise CompileException("cudasim: cooperative kernels (grid-wide sync, inline PTX "
                                   "mma) cannot run on the CPU simulator")
        if self._library is None:
            self._library = build_library(self.code + _entry_points(self.name_expressions),
                                          "module.so")

    def get_function(self, name: str) -> RawKernel:
        if name not in self.name_expressions:
            raise CUDADriverError(f"CUDA_ERROR_NOT_FOUND: {name!r} is not among the module's "
                                  f"name expressions {self.name_expressions}")
        self.compile()
        return RawKernel(self._library, self.name_expressions.index(name), name)


def _dim3(value: Any, what: str) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, (int, np.integer)) else tuple(value)
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what}: expected 1 to 3 dimensions, got {value!r}")
    return tuple(int(d) for d in dims) + (1,) * (3 - len(dims))


class RawKernel:
    """One compiled kernel; called as ``kernel(grid, block, args, shared_mem=0)``."""

    def __init__(self, library: ctypes.CDLL, index: int, name: str) -> None:
        self.name = name
        self.max_dynamic_shared_size_bytes = 0
        self._launch = getattr(library, f"cuda_sim_launch_{index}")
        self._launch.restype = None
        signature = getattr(library, f"cuda_sim_signature_{index}")
        codes = (ctypes.c_int * _MAX_ARGS)()
        count = signature(codes, _MAX_ARGS)
        self.parameter_codes = tuple(codes[:count])

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
            raise TypeError(f"{self.name} argument {i}: a NumPy array cannot be passed to a "
                            f"kernel (CuPy refuses host arrays)")
        # CuPy passes a Python int as int64 and a Python float as double.
        kind = {int: np.int64, float: np.float64}.get(type(arg), type(arg))
        if kind not in _SCALARS:
            raise TypeError(f"{self.name} argument {i}: unsupported type {type(arg)}")
        code, ctype = _SCALARS[kind]
        return code, ctype(arg)

    def __call__(self, grid: Any, block: Any, args: tuple, *, shared_mem: int = 0) -> None:
        grid3, block3 = _dim3(grid, "grid"), _dim3(block, "block")
        threads = block3[0] * block3[1] * block3[2]
        if min(grid3 + block3) < 1 or threads > 1024 or grid3[1] > 65535 or grid3[2] > 65535:
            raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: invalid argument (grid {grid3}, "
                                  f"block {block3})")
        if not isinstance(args, tuple):
            raise TypeError(f"args: expected a tuple, got {type(args)}")
        converted = [self._argument(i, a) for i, a in enumerate(args)]
        self._check_signature(args, [c for c, _ in converted])
        values = [v for _, v in converted]
        params = (ctypes.c_void_p * max(1, len(args)))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        g = (ctypes.c_uint * 3)(*grid3)
        b = (ctypes.c_uint * 3)(*block3)

        def run() -> None:
            self._launch(g, b, params)

        # The ctypes objects must outlive a captured launch: the closure holds them.
        run.keep = (values, params, g, b)  # type: ignore[attr-defined]
        enqueue(run)

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
