"""What the loader hands NVRTC for the pointwise kernels: the sources with their local
includes inlined, every storage type instantiated, unknown names refused.

The compile itself, through CuPy's own pipeline for sm_80 and sm_90, is in
tests/test_realcupy_compile.py.
"""
from __future__ import annotations

import pytest

from cuda_rnn.cuda import loader

POINTWISE = {b.filename: b for b in loader.module_builds() if not b.cooperative}


def test_every_storage_type_is_instantiated() -> None:
    names = POINTWISE["rnn.cu"].name_expressions
    assert len(names) == len(loader.KERNELS["rnn.cu"].kernels) * len(loader.CTYPES)
    assert "rnn_forward_pointwise<__nv_bfloat16>" in names
    assert "rnn_backward_pointwise<double>" in names


def test_every_lstm_variant_is_instantiated_for_every_storage_type() -> None:
    names = set(POINTWISE["lstm.cu"].name_expressions)
    flags = ("true", "false")
    expected = {f"lstm_{d}_pointwise<{ctype}, {peephole}, {forget_gate}, {projection}>"
                for d in ("forward", "backward") for ctype in loader.CTYPES.values()
                for peephole in flags for forget_gate in flags for projection in flags}
    expected |= {f"lstm_{d}_projection<{ctype}>" for d in ("forward", "backward")
                 for ctype in loader.CTYPES.values()}
    assert names == expected


def test_builds_cover_every_file_once() -> None:
    builds = loader.module_builds()
    assert [b.filename for b in builds] == list(loader.KERNELS)
    assert {b.filename for b in builds if b.cooperative} == {
        "lstm_persistent.cuh", "gru_persistent.cuh"}


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
    with pytest.raises(ValueError, match="variant: expected one of"):
        loader.get_kernel("lstm.cu", "lstm_forward_pointwise", "float32", "true")
    with pytest.raises(ValueError, match="variant: expected one of"):
        loader.get_kernel("lstm.cu", "lstm_forward_projection", "float32", "true, true, true")
