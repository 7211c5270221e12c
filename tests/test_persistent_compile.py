"""What the loader hands NVRTC for the persistent kernels: one source per cell with each
local include inlined once, and only the cells that have a persistent kernel.

The compile itself (every instantiation, the tensor-core and L2 instructions, no spills),
through CuPy's own pipeline for sm_80 and sm_90, is in tests/test_realcupy_compile.py.
"""
from __future__ import annotations

import pytest

from cuda_rnn.cuda import loader, persistent

#: The cooperative module builds by cell.
COOPERATIVE = {b.filename.removesuffix("_persistent.cuh"): b
               for b in loader.module_builds() if b.cooperative}


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


def test_every_cell_and_dtype_the_planner_runs_has_a_compiled_kernel() -> None:
    assert set(COOPERATIVE) == set(persistent.CELL_GATES)
    for cell, build in COOPERATIVE.items():
        for direction in persistent.DIRECTIONS:
            for dtype in persistent.ELEMENT_BYTES:
                name = loader.kernel_name(f"{cell}_{direction}_persistent", dtype)
                assert name in build.name_expressions
