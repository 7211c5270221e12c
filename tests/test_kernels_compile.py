"""Every pointwise kernel compiles under NVRTC for sm_80 and sm_90 on a machine with no GPU.

The source, the options and the name expressions are the ones cuda_rnn.cuda.loader hands to
cupy.RawModule (:func:`~cuda_rnn.cuda.loader.module_builds`); only --gpu-architecture and the
include path of cuda_fp16.h / cuda_bf16.h (which CuPy adds by itself on a GPU machine) are
added here. The cooperative modules are compiled by tests/test_persistent_compile.py. The test skips only when
cuda.bindings is missing; any compile failure, a missing header included, fails it.
"""
from __future__ import annotations

import pytest

from cuda_rnn.cuda import loader

nvrtc = pytest.importorskip(
    "cuda.bindings.nvrtc", reason="needs cuda-bindings (pip install 'cuda_rnn[test]')"
)

ARCHES = ("sm_80", "sm_90")
POINTWISE = {b.filename: b for b in loader.module_builds() if not b.cooperative}


class NvrtcError(RuntimeError):
    """A compile that NVRTC rejected, with its log."""


def _check(result: tuple, what: str) -> tuple:
    err, *rest = result
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise NvrtcError(f"{what} failed: {err}")
    return tuple(rest)


def _log(prog: object) -> str:
    (size,) = _check(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
    buf = b" " * size
    _check(nvrtc.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
    return buf.rstrip(b"\x00 ").decode(errors="replace")


def header_options() -> list[str]:
    """-I for the CUDA runtime headers shipped in the nvidia-cuda-runtime wheel."""
    from cuda import pathfinder

    include = pathfinder.find_nvidia_header_directory("cudart")
    if include is None:
        pytest.fail("cuda_fp16.h not found: pip install nvidia-cuda-runtime (the test extra)")
    return [f"-I{include}"]


def nvrtc_compile(
    source: str, filename: str, names: tuple[str, ...], options: list[str]
) -> dict[str, str]:
    """Compile ``source`` to PTX; return each name expression's lowered (mangled) name.

    Raises
    ------
    NvrtcError
        When NVRTC rejects the source; the message carries the compiler log.
    """
    (prog,) = _check(
        nvrtc.nvrtcCreateProgram(source.encode(), filename.encode(), 0, [], []),
        "nvrtcCreateProgram",
    )
    try:
        for name in names:
            _check(nvrtc.nvrtcAddNameExpression(prog, name.encode()), f"adding {name}")
        encoded = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise NvrtcError(f"NVRTC could not compile {filename} ({err}):\n{_log(prog)}")
        lowered = {}
        for name in names:
            (low,) = _check(nvrtc.nvrtcGetLoweredName(prog, name.encode()), f"lowering {name}")
            lowered[name] = low.decode()
        return lowered
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("filename", sorted(POINTWISE))
def test_kernel_file_compiles_with_loader_options(filename: str, arch: str) -> None:
    build = POINTWISE[filename]
    names = build.name_expressions
    options = [*build.options, *header_options(), f"--gpu-architecture={arch}"]
    lowered = nvrtc_compile(build.source, filename, names, options)
    assert sorted(lowered) == sorted(names)
    for name, low in lowered.items():
        kernel = name.split("<")[0]
        assert low.startswith("_Z") and kernel in low, (name, low)


def test_every_storage_type_is_instantiated() -> None:
    names = POINTWISE["lstm.cu"].name_expressions
    assert len(names) == len(loader.KERNELS["lstm.cu"].kernels) * len(loader.CTYPES)
    assert "lstm_forward_pointwise<__nv_bfloat16>" in names
    assert "lstm_backward_pointwise<double>" in names


def test_builds_cover_every_file_once() -> None:
    builds = loader.module_builds()
    assert [b.filename for b in builds] == list(loader.KERNELS)
    assert {b.filename for b in builds if b.cooperative} == {
        "lstm_persistent.cuh", "gru_persistent.cuh"}


def test_broken_source_fails_with_the_compiler_log() -> None:
    build = POINTWISE["rnn.cu"]
    source = build.source.replace("const A a = activate(", "const A a = activate((", 1)
    assert source != build.source
    options = [*build.options, *header_options(), "--gpu-architecture=sm_90"]
    with pytest.raises(NvrtcError) as info:
        nvrtc_compile(source, "rnn.cu", build.name_expressions, options)
    message = str(info.value)
    assert "rnn.cu" in message and "error" in message
    # The #line markers make the log point into rnn.cu, not into the inlined header.
    assert 'rnn.cu(' in message


def test_local_includes_are_inlined_with_line_markers() -> None:
    for filename, build in POINTWISE.items():
        source = build.source
        assert '#include "common.cuh"' not in source
        assert '#line 1 "common.cuh"' in source
        assert "namespace cuda_rnn" in source
        raw_lines = loader.read_source_file(filename).splitlines()
        marker = next(
            line for line in source.splitlines()
            if line.startswith("#line ") and filename in line
        )
        include_at = next(
            i for i, line in enumerate(raw_lines) if line.startswith('#include "common.cuh"')
        )
        # The line after the include keeps its number in compiler messages.
        assert int(marker.split()[1]) == include_at + 2


def test_unknown_file_kernel_or_dtype_is_rejected() -> None:
    with pytest.raises(ValueError, match="filename"):
        loader.module_build("conv.cu")
    with pytest.raises(ValueError, match="dtype"):
        loader.kernel_name("lstm_forward_pointwise", "int8")
    with pytest.raises(ValueError, match="kernel"):
        loader.get_kernel("lstm.cu", "gru_forward_pointwise", "float32")
    with pytest.raises(ValueError, match="dtype"):
        loader.get_kernel("lstm_persistent.cuh", "lstm_forward_persistent", "float64")
