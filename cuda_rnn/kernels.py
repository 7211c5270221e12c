"""Find the CUDA sources in kernels_cu/, compile them with NVRTC through CuPy, cache the result.

Each ``.cu`` file holds templated ``__global__`` kernels instantiated for the four storage
types through ``cupy.RawModule(name_expressions=...)``. A module is compiled once per
(file, options) and cached for the life of the process (CuPy also caches the binary on disk).

The sources are found with :mod:`importlib.resources` in the installed subpackage
``cuda_rnn.kernels_cu``; in a plain checkout run with ``PYTHONPATH=.`` that subpackage does not
exist and the files are read from ``<repo>/kernels_cu`` instead. ``#include "..."`` lines are
inlined here (with ``#line`` markers, so compiler messages name the right file and line),
which keeps the compile independent of the working directory and of include paths.

:data:`COMPILE_OPTIONS` and :func:`name_expressions` are exactly what :func:`get_module` hands
to RawModule; the CPU test in tests/test_kernels_compile.py compiles with the same two.
"""
from __future__ import annotations

import functools
import importlib.resources
import re
from pathlib import Path
from typing import Any

from .cellspec import SPECS

KERNEL_PACKAGE = "cuda_rnn.kernels_cu"
CHECKOUT_DIR = Path(__file__).resolve().parent.parent / "kernels_cu"

#: The kernels each source file defines, every one a template over the storage type.
KERNELS: dict[str, tuple[str, ...]] = {
    spec.source_file: spec.pointwise_kernels for spec in SPECS.values()
}

#: C++ storage type of each dtype name; pointwise math runs in float (double for float64).
CTYPES: dict[str, str] = {
    "float16": "__half",
    "bfloat16": "__nv_bfloat16",
    "float32": "float",
    "float64": "double",
}

#: NVRTC options for every module. No -arch: CuPy targets the device it runs on. Line info
#: costs nothing at run time and lets Nsight Compute map samples to source lines.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17", "--generate-line-info")

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries the compiler log."""


def _check_file(filename: str) -> None:
    if filename not in KERNELS:
        raise ValueError(f"filename: expected one of {tuple(KERNELS)}, got {filename!r}")


def read_source_file(filename: str) -> str:
    """Text of one file of kernels_cu/, installed or from the checkout.

    Raises
    ------
    FileNotFoundError
        When neither the installed package nor the checkout has the file.
    """
    try:
        resource = importlib.resources.files(KERNEL_PACKAGE) / filename
        if resource.is_file():
            return resource.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        pass
    path = CHECKOUT_DIR / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"kernel source {filename!r} is neither in the package {KERNEL_PACKAGE} "
            f"nor at {path}"
        )
    return path.read_text(encoding="utf-8")


def kernel_source(filename: str) -> str:
    """The complete source handed to NVRTC for ``filename`` (local includes inlined).

    Raises
    ------
    ValueError
        For a file that is not one of :data:`KERNELS`.
    """
    _check_file(filename)
    return inline_includes(filename)


def inline_includes(filename: str) -> str:
    """The text of ``filename`` with its ``#include "..."`` lines replaced by the files they
    name, recursively and each file once (as ``#pragma once`` would), with ``#line`` markers
    so that compiler messages name the right file and line."""
    seen: set[str] = set()

    def expand(name: str) -> str:
        seen.add(name)
        text = read_source_file(name)
        pieces: list[str] = []
        last = 0
        for match in _LOCAL_INCLUDE.finditer(text):
            pieces.append(text[last : match.start()])
            included = match.group(1)
            if included not in seen:
                resume_line = text.count("\n", 0, match.end()) + 2
                pieces.append(f'#line 1 "{included}"\n{expand(included)}\n')
                pieces.append(f'#line {resume_line} "{name}"')
            last = match.end()
        pieces.append(text[last:])
        return "".join(pieces)

    return expand(filename)


def kernel_name(kernel: str, dtype: str) -> str:
    """Name expression of one instantiation, e.g. ``lstm_forward_pointwise<float>``.

    Raises
    ------
    ValueError
        For a dtype name outside :data:`CTYPES`.
    """
    if dtype not in CTYPES:
        raise ValueError(f"dtype: expected one of {tuple(CTYPES)}, got {dtype!r}")
    return f"{kernel}<{CTYPES[dtype]}>"


def name_expressions(filename: str) -> tuple[str, ...]:
    """Every instantiation compiled for ``filename``: each kernel for each storage type."""
    _check_file(filename)
    return tuple(kernel_name(k, d) for k in KERNELS[filename] for d in CTYPES)


@functools.lru_cache(maxsize=None)
def get_module(filename: str, options: tuple[str, ...] = COMPILE_OPTIONS) -> Any:
    """Compile ``filename`` (all kernels, all storage types) once and return the RawModule.

    Raises
    ------
    KernelCompileError
        With the NVRTC log, when the source does not compile.
    """
    import cupy

    module = cupy.RawModule(
        code=kernel_source(filename),
        options=options,
        name_expressions=name_expressions(filename),
    )
    try:
        module.compile()
    except cupy.cuda.compiler.CompileException as exc:
        raise KernelCompileError(
            f"NVRTC could not compile kernels_cu/{filename} with options {options}:\n{exc}"
        ) from exc
    except RuntimeError as exc:  # CuPy found no CUDA headers or toolkit to compile with
        raise KernelCompileError(
            f"could not compile kernels_cu/{filename}: {exc} (CuPy 14 needs "
            f"'cupy-cuda13x[ctk]' or a CUDA Toolkit)"
        ) from exc
    return module


@functools.lru_cache(maxsize=None)
def get_kernel(filename: str, kernel: str, dtype: str) -> Any:
    """The compiled ``cupy.RawKernel`` for one kernel of ``filename`` and one storage dtype.

    Raises
    ------
    ValueError
        For a kernel that ``filename`` does not define, or an unknown dtype.
    """
    _check_file(filename)
    if kernel not in KERNELS[filename]:
        raise ValueError(f"kernel: expected one of {KERNELS[filename]}, got {kernel!r}")
    return get_module(filename).get_function(kernel_name(kernel, dtype))
