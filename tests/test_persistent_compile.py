"""What the loader hands NVRTC for the persistent kernels: one source per cell with each
local include inlined once, and only the cells that have a persistent kernel.

The compile itself (every instantiation, the tensor-core and L2 instructions, no spills),
through CuPy's own pipeline for sm_80 and sm_90, is in tests/test_realcupy_compile.py.
"""
from __future__ import annotations

import pytest

from cuda_rnn import kernels
from cuda_rnn.cuda import persistent


def test_source_inlines_each_local_include_once_with_line_markers() -> None:
    source = persistent.persistent_source("lstm")
    assert '#include "' not in source
    assert source.count('#line 1 "persistent.cuh"') == 1
    assert source.count('#line 1 "common.cuh"') == 1
    assert "lstm_forward_persistent" in source and "gru_forward_persistent" not in source
    # After an inlined file the markers resume at the line after its #include.
    raw = kernels.read_source_file("lstm_persistent.cuh").splitlines()
    include_at = next(i for i, line in enumerate(raw) if line.startswith('#include "persistent'))
    assert f'#line {include_at + 2} "lstm_persistent.cuh"' in source


def test_unknown_cell_is_rejected() -> None:
    with pytest.raises(ValueError, match="cell"):
        persistent.persistent_source("rnn")
