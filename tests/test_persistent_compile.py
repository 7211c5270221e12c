"""The persistent kernels compile under NVRTC for sm_80 and sm_90 on a machine with no GPU.

Source, name expressions and options are the ones cuda_rnn.cuda.loader hands to
cupy.RawModule for the cooperative modules (:func:`~cuda_rnn.cuda.loader.module_builds`), plus
the target architecture, and the include paths of the CUDA runtime headers and of CCCL (which
cooperative_groups.h needs; CuPy adds its own on a GPU machine). The test skips only when
cuda.bindings is missing: a missing header or any compile error fails it.
"""
from __future__ import annotations

import re

import pytest

from cuda_rnn.cuda import loader, persistent

nvrtc = pytest.importorskip("cuda.bindings.nvrtc",
                            reason="needs cuda-bindings (pip install 'cuda_rnn[test]')")

ARCHES = ("sm_80", "sm_90")
#: The cooperative module builds by cell.
COOPERATIVE = {b.filename.removesuffix("_persistent.cuh"): b
               for b in loader.module_builds() if b.cooperative}
CELLS = tuple(COOPERATIVE)


def _ok(result: tuple, what: str) -> tuple:
    err, *rest = result
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, f"{what} failed: {err}"
    return tuple(rest)


def include_options() -> list[str]:
    """-I for cuda_runtime / cooperative_groups.h and for CCCL (nv/target, cuda/std)."""
    from cuda import pathfinder

    options = []
    for package, hint in (("cudart", "nvidia-cuda-runtime"), ("cccl", "nvidia-cuda-cccl")):
        include = pathfinder.find_nvidia_header_directory(package)
        if include is None:
            pytest.fail(f"{package} headers not found: pip install {hint} (the test extra)")
        options.append(f"-I{include}")
    return options


def compile_persistent(cell: str, arch: str, source: str | None = None) -> tuple[dict, str, str]:
    """Compile a cell's persistent kernels; return (lowered names, PTX, compiler log)."""
    build = COOPERATIVE[cell]
    names = build.name_expressions
    options = [*build.options, *include_options(), f"--gpu-architecture={arch}", "-Xptxas=-v"]
    text = build.source if source is None else source
    (prog,) = _ok(nvrtc.nvrtcCreateProgram(text.encode(), f"{cell}_persistent.cu".encode(),
                                           0, [], []), "nvrtcCreateProgram")
    try:
        for name in names:
            _ok(nvrtc.nvrtcAddNameExpression(prog, name.encode()), f"adding {name}")
        encoded = [o.encode() for o in options]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)
        (size,) = _ok(nvrtc.nvrtcGetProgramLogSize(prog), "log size")
        log = b" " * size
        _ok(nvrtc.nvrtcGetProgramLog(prog, log), "log")
        log_text = log.rstrip(b"\x00 ").decode(errors="replace")
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise AssertionError(f"NVRTC could not compile {cell} persistent kernels for "
                                 f"{arch} ({err}):\n{log_text}")
        lowered = {}
        for name in names:
            (low,) = _ok(nvrtc.nvrtcGetLoweredName(prog, name.encode()), f"lowering {name}")
            lowered[name] = low.decode()
        (ptx_size,) = _ok(nvrtc.nvrtcGetPTXSize(prog), "PTX size")
        ptx = b" " * ptx_size
        _ok(nvrtc.nvrtcGetPTX(prog, ptx), "PTX")
        return lowered, ptx.rstrip(b"\x00 ").decode(), log_text
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("cell", CELLS)
def test_persistent_kernels_compile_with_loader_options(cell: str, arch: str) -> None:
    lowered, ptx, log = compile_persistent(cell, arch)
    assert sorted(lowered) == sorted(COOPERATIVE[cell].name_expressions)
    for name, low in lowered.items():
        assert low.startswith("_Z") and name.split("<")[0] in low, (name, low)
        assert f".entry {low}(" in ptx, f"{name} has no kernel entry in the PTX"
    # Both tensor-core paths are there: TF32 for float, bf16 for __nv_bfloat16.
    assert "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" in ptx
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in ptx
    # Activations written by other blocks are read through L2 only (ld.global.cg).
    assert "ld.global.cg" in ptx


@pytest.mark.parametrize("cell", CELLS)
def test_persistent_kernels_do_not_spill(cell: str) -> None:
    _, _, log = compile_persistent(cell, "sm_90")
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores", log)
    assert len(frames) == len(COOPERATIVE[cell].name_expressions), log
    assert all(frame == ("0", "0") for frame in frames), log


def test_source_inlines_each_local_include_once_with_line_markers() -> None:
    source = COOPERATIVE["lstm"].source
    assert '#include "' not in source
    assert source.count('#line 1 "persistent.cuh"') == 1
    assert source.count('#line 1 "common.cuh"') == 1
    assert "lstm_forward_persistent" in source and "gru_forward_persistent" not in source
    # After an inlined file the markers resume at the line after its #include.
    raw = loader.read_source_file("lstm_persistent.cuh").splitlines()
    include_at = next(i for i, line in enumerate(raw) if line.startswith('#include "persistent'))
    assert f'#line {include_at + 2} "lstm_persistent.cuh"' in source


def test_compile_error_names_the_persistent_file() -> None:
    good = COOPERATIVE["gru"].source
    broken = good.replace("const float h_keep = real ?", "const float h_keep = real ?*", 1)
    assert broken != good
    with pytest.raises(AssertionError, match=r"gru_persistent\.cuh\(\d+\)"):
        compile_persistent("gru", "sm_90", broken)


def test_every_cell_and_dtype_the_planner_runs_has_a_compiled_kernel() -> None:
    assert set(COOPERATIVE) == set(persistent.CELL_GATES)
    for cell, build in COOPERATIVE.items():
        for direction in persistent.DIRECTIONS:
            for dtype in persistent.ELEMENT_BYTES:
                name = loader.kernel_name(f"{cell}_{direction}_persistent", dtype)
                assert name in build.name_expressions
