"""Every kernel module the loader builds compiles through CuPy's own NVRTC pipeline, for sm_80
and sm_90, with every name expression lowered; no GPU needed.

What is compiled is what the loader hands to ``cupy.RawModule``: the real class is swapped
for a subclass that records each module instead of compiling it (:func:`loader_modules`).
The options are then the ones CuPy assembles on a GPU machine: ``assemble_cupy_compiler_options``
(its bundled CCCL first, C++17 unless given, its own and the CUDA headers), the ``-ftz=true``
that ``_compile_with_cache_cuda`` appends, and what ``compile_using_nvrtc`` adds itself
(``-arch=sm_XX`` and ``--device-as-default-execution-space``). The only step not taken is
CuPy's per-device lookup of the architecture, which asks the driver which device is current:
the test names the architecture instead.

The glue that knows the loader is :func:`loader_modules` alone.
"""
from __future__ import annotations

import functools
import inspect
import io
import re

import pytest

from cuda_rnn.cuda import loader, persistent

pytestmark = pytest.mark.realcupy

cupy = pytest.importorskip("cupy")
from cupy._core import core  # noqa: E402
from cupy.cuda import compiler  # noqa: E402

ARCHES = ("80", "90")


@functools.lru_cache(maxsize=1)
def loader_modules() -> dict[str, cupy.RawModule]:
    """Every module the loader builds (pointwise per .cu file, cooperative per cell), as
    constructed by the real ``cupy.RawModule`` from the loader's arguments."""
    built: list[cupy.RawModule] = []

    class Recorded(cupy.RawModule):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            built.append(self)

        def compile(self, log_stream: object = None) -> None:
            """Recorded, not compiled."""

        def get_function(self, name: str) -> None:
            assert name in self.name_expressions, name

    real = cupy.RawModule
    cupy.RawModule = Recorded
    try:
        loader.get_module.cache_clear()
        modules = {}
        for filename in loader.KERNELS:
            loader.get_module(filename)
            modules[filename] = built[-1]
    finally:
        cupy.RawModule = real
        loader.get_module.cache_clear()
    return modules


MODULES = ("rnn.cu", "lstm.cu", "gru.cu", "recurrent_dropout.cu", "lstm_layer_norm.cu",
           "lstm_persistent.cuh", "gru_persistent.cuh")


@pytest.fixture
def cupy_arch(monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy's architecture option without its per-device memo (which needs a driver)."""
    monkeypatch.setattr(compiler, "_get_arch_for_options_for_nvrtc",
                        compiler._get_arch_for_options_for_nvrtc.__wrapped__)


def cupy_options(module: cupy.RawModule) -> tuple[str, ...]:
    return core.assemble_cupy_compiler_options(module.options) + ("-ftz=true",)


def compile_module(filename: str, arch: str, code: str | None = None,
                   extra: tuple[str, ...] = ()) -> tuple[bytes, dict[str, str], str]:
    """(binary, name expression -> lowered name, compiler log) of one loader module."""
    module = loader_modules()[filename]
    log = io.StringIO()
    binary, mapping = compiler.compile_using_nvrtc(
        module.code if code is None else code, cupy_options(module) + extra, arch=arch,
        filename=filename, name_expressions=module.name_expressions, log_stream=log)
    return binary, mapping, log.getvalue()


def test_cupy_appends_flush_to_zero_to_every_compile() -> None:
    # cupy_options adds it by hand: this notices when CuPy stops doing so.
    assert "options += ('-ftz=true',)" in inspect.getsource(compiler._compile_with_cache_cuda)


def test_the_loader_builds_one_module_per_file_and_cell() -> None:
    modules = loader_modules()
    assert sorted(modules) == sorted(MODULES)
    for filename, module in modules.items():
        cooperative = filename.endswith("_persistent.cuh")
        assert module.enable_cooperative_groups == cooperative, filename
        dtypes = persistent.ELEMENT_BYTES if cooperative else loader.CTYPES
        entry = loader.KERNELS[filename]
        assert len(module.name_expressions) == (
            len(entry.kernels) * len(entry.variants) + len(entry.plain)) * len(dtypes), filename
    assert len(loader.KERNELS["lstm.cu"].variants) == 8
    assert ("lstm_forward_pointwise<__nv_bfloat16, true, false, true>"
            in modules["lstm.cu"].name_expressions)
    assert "lstm_backward_projection<double>" in modules["lstm.cu"].name_expressions
    assert "rnn_forward_pointwise<__nv_bfloat16>" in modules["rnn.cu"].name_expressions
    assert ("lstm_backward_layer_norm<float, true, true, false>"
            in modules["lstm_layer_norm.cu"].name_expressions)
    assert "gru_backward_persistent<float>" in modules["gru_persistent.cuh"].name_expressions


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("filename", MODULES)
def test_every_module_compiles_through_cupys_pipeline(cupy_arch: None, filename: str,
                                                      arch: str) -> None:
    binary, mapping, _ = compile_module(filename, arch)
    names = loader_modules()[filename].name_expressions
    assert sorted(mapping) == sorted(names)
    for name, lowered in mapping.items():
        assert lowered.startswith("_Z") and name.split("<")[0] in lowered, (name, lowered)
    assert binary[:4] == b"\x7fELF"  # a cubin: ptxas ran for sm_{arch}


@pytest.mark.parametrize("filename, good, bad", [
    ("rnn.cu", "const A a = activate(", "const A a = activate(("),
    ("gru_persistent.cuh", "const float h_keep = real ?", "const float h_keep = real ?*"),
])
def test_a_broken_source_fails_naming_its_file_and_line(cupy_arch: None, filename: str,
                                                        good: str, bad: str) -> None:
    code = loader_modules()[filename].code
    assert good in code
    with pytest.raises(compiler.CompileException) as info:
        compile_module(filename, "90", code.replace(good, bad, 1))
    # The #line markers point the log into the file that holds the line.
    source_file = "gru_persistent.cuh" if filename.endswith(".cuh") else filename
    assert re.search(rf"{re.escape(source_file)}\(\d+\): error", str(info.value))


@pytest.fixture
def cupy_ptx(monkeypatch: pytest.MonkeyPatch) -> None:
    """CuPy's PTX path (taken with CUPY_COMPILE_WITH_PTX=1), to read the instructions."""
    monkeypatch.setattr(compiler, "_get_arch_for_options_for_nvrtc",
                        lambda arch=None: (f"-arch=compute_{arch}", "ptx"))


@pytest.mark.slow
@pytest.mark.parametrize("cell", persistent.CELL_GATES)
def test_persistent_kernels_use_tensor_cores_and_l2_reads(cupy_ptx: None, cell: str) -> None:
    ptx, mapping, _ = compile_module(f"{cell}_persistent.cuh", "80")
    ptx = ptx.decode() if isinstance(ptx, bytes) else ptx
    for lowered in mapping.values():
        assert f".entry {lowered}(" in ptx, f"{lowered} has no kernel entry in the PTX"
    # Both tensor-core paths are there: TF32 for float, bf16 for __nv_bfloat16.
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in ptx
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in ptx
    # Activations written by other blocks are read through L2 only (ld.global.cg).
    assert "ld.global.cg" in ptx


@pytest.mark.slow
@pytest.mark.parametrize("cell", persistent.CELL_GATES)
def test_persistent_kernels_do_not_spill(cupy_arch: None, cell: str) -> None:
    _, mapping, log = compile_module(f"{cell}_persistent.cuh", "90", extra=("-Xptxas=-v",))
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores", log)
    assert len(frames) == len(mapping), log
    assert all(frame == ("0", "0") for frame in frames), log

