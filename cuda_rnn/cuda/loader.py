"""Every RawModule of cuda_rnn: find the sources in kernels_cu/, compile them with NVRTC
through CuPy, cache the modules and look up their kernels.

Each compiled file holds templated ``__global__`` kernels, instantiated for its storage types
(and, for the LSTM's pointwise kernels, every combination of its compile-time options,
:func:`cuda_rnn.cellspec.kernel_variants`) through ``cupy.RawModule(name_expressions=...)``
and listed in :data:`KERNELS`. A module is
compiled once per process (CuPy also caches the binary on disk). The pointwise kernels
(``<cell>.cu``) and the persistent ones (``<cell>_persistent.cuh``) sit in modules of their
own: CuPy launches every kernel of a module built with ``enable_cooperative_groups``
cooperatively and caps such a grid at what fits on the device, which would cut the
pointwise kernels' large grids short.

The sources are found with :mod:`importlib.resources` in the installed subpackage
``cuda_rnn.kernels_cu``; in a plain checkout run with ``PYTHONPATH=.`` that subpackage does not
exist and the files are read from ``<repo>/kernels_cu`` instead. ``#include "..."`` lines are
inlined here (with ``#line`` markers, so compiler messages name the right file and line),
which keeps the compile independent of the working directory and of include paths.

:func:`module_builds` lists what :func:`get_module` hands to RawModule for every file (source,
options, name expressions, cooperative or not); the NVRTC compile tests compile exactly those.
"""
from __future__ import annotations

import functools
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cellspec import DIRECTIONS, SPECS, kernel_variants

KERNEL_PACKAGE = "cuda_rnn.kernels_cu"
CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "kernels_cu"

#: C++ storage type of each dtype name; pointwise math runs in float (double for float64).
CTYPES: dict[str, str] = {
    "float16": "__half",
    "bfloat16": "__nv_bfloat16",
    "float32": "float",
    "float64": "double",
}

#: Storage types with a tensor-core path in persistent.cuh (TF32 and bf16 mma.sync).
TENSOR_CORE_DTYPES: tuple[str, ...] = ("float32", "bfloat16")


@dataclass(frozen=True)
class KernelFile:
    """The kernels one file of kernels_cu/ defines, each a template over the storage type.

    dtypes : the storage types each kernel is instantiated for.
    cooperative : compiled as a module of its own with ``enable_cooperative_groups``.
    variants : the template arguments after the storage type of each instantiation of
        ``kernels`` ("" for none), each instantiated for every dtype.
    plain : further kernels templated on the storage type only.
    """

    kernels: tuple[str, ...]
    dtypes: tuple[str, ...] = tuple(CTYPES)
    cooperative: bool = False
    variants: tuple[str, ...] = ("",)
    plain: tuple[str, ...] = ()

    def variants_of(self, kernel: str) -> tuple[str, ...]:
        """The variants ``kernel`` is instantiated for ("" alone for a plain kernel).

        Raises
        ------
        ValueError
            For a kernel the file does not define.
        """
        if kernel in self.plain:
            return ("",)
        if kernel not in self.kernels:
            raise ValueError(f"kernel: expected one of {self.kernels + self.plain}, "
                             f"got {kernel!r}")
        return self.variants


#: The kernels around the recurrent GEMM of recurrent dropout, for every cell.
RECURRENT_DROPOUT_KERNELS = ("recurrent_dropout_forward", "recurrent_dropout_backward")

#: Every file the loader compiles, with its kernels: each cell's pointwise file, the
#: recurrent dropout kernels, the layer-normalised LSTM's step kernels, and the cooperative
#: file of each cell with a persistent kernel.
KERNELS: dict[str, KernelFile] = {
    **{spec.source_file: KernelFile(spec.pointwise_kernels, variants=kernel_variants(spec.cell),
                                    plain=spec.projection_kernels)
       for spec in SPECS.values()},
    "recurrent_dropout.cu": KernelFile(RECURRENT_DROPOUT_KERNELS),
    "lstm_layer_norm.cu": KernelFile(SPECS["lstm"].layer_norm_kernels,
                                     variants=kernel_variants("lstm")),
    **{f"{spec.cell}_persistent.cuh": KernelFile(
        tuple(spec.kernel_name(d, "persistent") for d in DIRECTIONS), TENSOR_CORE_DTYPES,
        cooperative=True) for spec in SPECS.values() if spec.persistent},
}

#: NVRTC options for every module. No -arch: CuPy targets the device it runs on. Line info
#: costs nothing at run time and lets Nsight Compute map samples to source lines. CuPy appends
#: -ftz=true to every compile; it is stated here too, so that a compile of exactly these
#: options (the CPU compile tests) builds what the GPU runs.
COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17", "--generate-line-info", "-ftz=true")

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.MULTILINE)


class KernelCompileError(RuntimeError):
    """NVRTC rejected a kernel source; the message carries the compiler log."""


@dataclass(frozen=True)
class ModuleBuild:
    """One RawModule as the loader builds it: the arguments it hands to ``cupy.RawModule``."""

    filename: str
    source: str
    options: tuple[str, ...]
    name_expressions: tuple[str, ...]
    cooperative: bool


def _kernel_file(filename: str) -> KernelFile:
    if filename not in KERNELS:
        raise ValueError(f"filename: expected one of {tuple(KERNELS)}, got {filename!r}")
    return KERNELS[filename]


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


def kernel_name(kernel: str, dtype: str, variant: str = "") -> str:
    """Name expression of one instantiation, e.g. ``rnn_forward_pointwise<float>`` or, with
    ``variant`` "true, false", ``lstm_forward_pointwise<float, true, false>``.

    Raises
    ------
    ValueError
        For a dtype name outside :data:`CTYPES`.
    """
    if dtype not in CTYPES:
        raise ValueError(f"dtype: expected one of {tuple(CTYPES)}, got {dtype!r}")
    return f"{kernel}<{CTYPES[dtype]}{', ' + variant if variant else ''}>"


def module_build(filename: str) -> ModuleBuild:
    """What :func:`get_module` compiles for ``filename``: its source with the local includes
    inlined, :data:`COMPILE_OPTIONS`, and every kernel for every storage type of the file.

    Raises
    ------
    ValueError
        For a file that is not one of :data:`KERNELS`.
    """
    entry = _kernel_file(filename)
    names = tuple(kernel_name(k, d, v) for k in entry.kernels + entry.plain
                  for v in entry.variants_of(k) for d in entry.dtypes)
    return ModuleBuild(filename, inline_includes(filename), COMPILE_OPTIONS, names,
                       entry.cooperative)


def module_builds() -> tuple[ModuleBuild, ...]:
    """Every module the loader builds, one per file of :data:`KERNELS`."""
    return tuple(module_build(filename) for filename in KERNELS)


@functools.lru_cache(maxsize=None)
def get_module(filename: str) -> Any:
    """Compile ``filename`` (all its kernels and storage types) once and return the RawModule.

    Raises
    ------
    ValueError
        For a file that is not one of :data:`KERNELS`.
    KernelCompileError
        With the NVRTC log, when the source does not compile.
    """
    import cupy

    build = module_build(filename)
    what = f"kernels_cu/{filename}" + (" (cooperative)" if build.cooperative else "")
    module = cupy.RawModule(code=build.source, options=build.options,
                            name_expressions=build.name_expressions,
                            enable_cooperative_groups=build.cooperative)
    try:
        module.compile()
    except cupy.cuda.compiler.CompileException as exc:
        raise KernelCompileError(
            f"NVRTC could not compile {what} with options {build.options}:\n{exc}"
        ) from exc
    except RuntimeError as exc:  # CuPy found no CUDA headers or toolkit to compile with
        raise KernelCompileError(
            f"could not compile {what}: {exc} (CuPy 14 needs 'cupy-cuda13x[ctk]' or a CUDA "
            f"Toolkit)"
        ) from exc
    return module


@functools.lru_cache(maxsize=None)
def get_kernel(filename: str, kernel: str, dtype: str, variant: str = "") -> Any:
    """The compiled ``cupy.RawKernel`` for one kernel of ``filename``, one storage dtype and
    one variant (looked up once).

    Raises
    ------
    ValueError
        For a file outside :data:`KERNELS`, a kernel it does not define, or a dtype or variant
        it is not instantiated for.
    """
    entry = _kernel_file(filename)
    variants = entry.variants_of(kernel)
    if dtype not in entry.dtypes:
        raise ValueError(f"dtype: expected one of {entry.dtypes} for {filename}, got {dtype!r}")
    if variant not in variants:
        raise ValueError(f"variant: expected one of {variants} for {kernel}, got {variant!r}")
    return get_module(filename).get_function(kernel_name(kernel, dtype, variant))
