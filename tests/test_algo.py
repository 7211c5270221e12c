"""CPU-checkable logic of the algo= choice: validation, fit rules, the auto rules, layouts."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.cellspec import cell_spec
from cuda_rnn.cuda import algo
from cuda_rnn.cuda.persistent import (
    CELL_GATES,
    ELEMENT_BYTES,
    H100,
    THREADS,
    DeviceLimits,
    padded_stride,
    plan_persistent,
)

BENCH_SHAPES = ((16, 768), (64, 512))  # (B, H) of bench.py's two target shapes


@pytest.mark.parametrize("name", ["Graph", "cudnn", "", "persistant"])
def test_unknown_algo_names_the_argument_and_the_choices(name: str) -> None:
    with pytest.raises(ValueError, match=r"algo: expected one of \('alternating', 'graph', "
                                         r"'persistent', 'auto'\), got " + repr(name)):
        algo.check_algo(name)


def test_known_algos_pass_validation() -> None:
    assert [algo.check_algo(a) for a in algo.ALGOS] == list(algo.ALGOS)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("batch, hidden", BENCH_SHAPES)
def test_bench_shapes_fit_on_an_h100(cell: str, dtype: str, direction: str, batch: int,
                                     hidden: int) -> None:
    plan = plan_persistent(cell, direction, hidden, batch, dtype, H100)
    assert plan.fits, plan.reason
    assert plan.reason == ""
    assert plan.blocks <= H100.sm_count
    assert plan.blocks * plan.units_per_block >= hidden
    assert (plan.blocks - 1) * plan.units_per_block < hidden
    assert plan.smem_bytes <= H100.smem_per_block


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_small_batch_shapes_fit(cell: str, direction: str, rng: np.random.Generator) -> None:
    for _ in range(8):
        batch = int(rng.integers(1, 9))
        hidden = int(rng.integers(256, 1025))
        for dtype in ELEMENT_BYTES:
            plan = plan_persistent(cell, direction, hidden, batch, dtype, H100)
            assert plan.fits, plan.reason


def test_fp32_lstm_w_hh_larger_than_the_chip_does_not_fit() -> None:
    # 4 * 2048^2 float32 = 64 MiB of W_hh against 132 x 227 KiB of shared memory.
    plan = plan_persistent("lstm", "forward", 2048, 16, "float32", H100)
    assert not plan.fits
    assert "shared memory per block" in plan.reason and "H=2048" in plan.reason
    assert "232448" in plan.reason and "H100" in plan.reason
    assert plan.smem_bytes == 0 and plan.blocks == 0


def test_bf16_halves_the_weight_footprint() -> None:
    # The same GRU size fits in bf16 (24 MiB of W_hh) and not in float32 (48 MiB).
    assert not plan_persistent("gru", "forward", 2048, 16, "float32", H100).fits
    assert plan_persistent("gru", "forward", 2048, 16, "bfloat16", H100).fits


@pytest.mark.parametrize("cell, dtype, needle", [
    ("rnn", "float32", "cell 'rnn'"),
    ("lstm", "float64", "dtype 'float64'"),
    ("gru", "float16", "dtype 'float16'"),
])
def test_unsupported_cell_or_dtype_says_why(cell: str, dtype: str, needle: str) -> None:
    plan = plan_persistent(cell, "forward", 256, 4, dtype, H100)
    assert not plan.fits
    assert needle in plan.reason


def test_bad_direction_or_sizes_raise() -> None:
    with pytest.raises(ValueError, match="direction: expected one of"):
        plan_persistent("lstm", "sideways", 256, 4, "float32")
    with pytest.raises(ValueError, match=r"hidden, batch: expected >= 1, got 0, 4"):
        plan_persistent("lstm", "forward", 0, 4, "float32")


def test_a_smaller_device_fits_less() -> None:
    small = DeviceLimits(sm_count=16, smem_per_block=100 * 1024, name="tiny")
    plan = plan_persistent("lstm", "forward", 768, 16, "float32", small)
    assert not plan.fits and "tiny" in plan.reason
    assert plan_persistent("lstm", "forward", 768, 16, "float32", H100).fits


@pytest.mark.parametrize("element_bytes", [2, 4])
def test_padded_stride_avoids_bank_conflicts(element_bytes: int,
                                             rng: np.random.Generator) -> None:
    for k in rng.integers(1, 5000, size=50):
        ld = padded_stride(int(k), element_bytes)
        words = ld * element_bytes // 4
        assert ld >= k and ld * element_bytes % 4 == 0
        assert words % 8 == 4
        # The 8 rows x 4 word-columns of one fragment load land in 32 distinct banks.
        banks = {(g * words + q) % 32 for g in range(8) for q in range(4)}
        assert len(banks) == 32


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_plan_layout_is_consistent(cell: str, dtype: str, direction: str,
                                   rng: np.random.Generator) -> None:
    gates, eb = CELL_GATES[cell], ELEMENT_BYTES[dtype]
    for _ in range(20):
        batch, hidden = int(rng.integers(1, 130)), int(rng.integers(1, 1500))
        plan = plan_persistent(cell, direction, hidden, batch, dtype, H100)
        if not plan.fits:
            continue
        k_total = hidden if direction == "forward" else gates * hidden
        rows = gates * plan.units_per_block if direction == "forward" else plan.units_per_block
        assert plan.ldw >= k_total and plan.lds >= plan.chunk
        assert plan.chunk % 16 == 0 and plan.chunk >= min(64, k_total)
        assert plan.chunk <= -(-k_total // 16) * 16
        # Regions in order, 16-byte aligned, each large enough for what the kernel puts there.
        assert plan.stage_offset >= rows * plan.ldw * eb
        assert plan.red_offset - plan.stage_offset >= batch * plan.lds * eb
        m, n = (rows, batch) if direction == "forward" else (batch, rows)
        assert plan.ldr >= -(-n // 8) * 8
        red_floats = plan.ksplit * (-(-m // 16) * 16) * plan.ldr
        assert plan.state_offset - plan.red_offset >= red_floats * 4
        for offset in (plan.stage_offset, plan.red_offset, plan.state_offset):
            assert offset % 16 == 0
        assert plan.smem_bytes > plan.state_offset
        assert plan.smem_bytes <= H100.smem_per_block
        assert 1 <= plan.ksplit <= THREADS // 32
        args = plan.layout_args()
        assert len(args) == 9 and all(isinstance(a, np.int32) for a in args)


def test_persistent_request_falls_back_to_graph_with_the_reason() -> None:
    choice = algo.choose_algo("persistent", "lstm", "forward", 100, 16, 2048, "float32")
    assert choice.requested == "persistent" and choice.used == "graph"
    assert choice.reason.startswith("persistent does not fit: ")
    assert "H=2048" in choice.reason
    fits = algo.choose_algo("persistent", "lstm", "forward", 100, 16, 768, "float32")
    assert (fits.used, fits.reason) == ("persistent", "requested")


@pytest.mark.parametrize("requested", ["alternating", "graph"])
def test_explicit_loop_algos_are_kept(requested: str) -> None:
    for cell in ("rnn", "lstm", "gru"):
        choice = algo.choose_algo(requested, cell, "backward", 50, 8, 512, "float32")
        assert (choice.used, choice.reason) == (requested, "requested")


def test_auto_rules(rng: np.random.Generator) -> None:
    steps = int(rng.integers(algo.AUTO_MIN_STEPS, 2000))
    fit = algo.choose_algo("auto", "gru", "forward", steps, 16, 768, "bfloat16")
    assert fit.used == "persistent" and "fits on chip" in fit.reason
    too_big = algo.choose_algo("auto", "lstm", "backward", steps, 16, 2048, "float32")
    assert too_big.used == "graph" and "does not fit" in too_big.reason
    no_kernel = algo.choose_algo("auto", "rnn", "forward", steps, 16, 768, "float32")
    assert no_kernel.used == "graph" and "cell 'rnn'" in no_kernel.reason
    short = algo.choose_algo("auto", "lstm", "forward", algo.AUTO_MIN_STEPS - 1, 16, 768,
                             "float32")
    assert short.used == "alternating" and f"T={algo.AUTO_MIN_STEPS - 1}" in short.reason


def test_choose_algo_validates() -> None:
    with pytest.raises(ValueError, match="algo: expected one of"):
        algo.choose_algo("fast", "lstm", "forward", 10, 1, 8, "float32")
    with pytest.raises(ValueError, match="steps: expected >= 1, got 0"):
        algo.choose_algo("auto", "lstm", "forward", 0, 1, 8, "float32")


@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("1", True)])
def test_tf32_switch(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv(algo.TF32_ENV, value)
    assert algo.tf32_allowed() is expected


def test_tf32_switch_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(algo.TF32_ENV, "yes")
    with pytest.raises(ValueError, match=r"CUDA_RNN_ALLOW_TF32: expected '0' or '1', got 'yes'"):
        algo.tf32_allowed()


# Forward hs steps so that G * hs rows fill 16-row mma tiles (capped at 8 units); backward hs
# is the 8-column N of a tile. On chip per (unit, batch row): forward one float state;
# backward dh, the terms outside W_hh and, for the LSTM, dc.
UNIT_STEPS = {("lstm", "forward"): 4, ("gru", "forward"): 8,
              ("lstm", "backward"): 8, ("gru", "backward"): 8}
STATE_FLOATS = {("lstm", "forward"): 1, ("gru", "forward"): 1,
                ("lstm", "backward"): 3, ("gru", "backward"): 2}


@pytest.mark.parametrize("cell, direction", sorted(UNIT_STEPS))
def test_plan_units_and_on_chip_states_follow_the_cell(cell: str, direction: str,
                                                       rng: np.random.Generator) -> None:
    for _ in range(20):
        batch, hidden = int(rng.integers(1, 65)), int(rng.integers(1, 1025))
        plan = plan_persistent(cell, direction, hidden, batch, "float32", H100)
        assert plan.fits, plan.reason
        step = UNIT_STEPS[cell, direction]
        assert plan.units_per_block == -(-(-(-hidden // H100.sm_count)) // step) * step
        floats = STATE_FLOATS[cell, direction] * plan.units_per_block * batch
        assert plan.smem_bytes - plan.state_offset == floats * 4


def test_cell_options_the_persistent_kernels_do_not_run_fall_back_or_raise() -> None:
    why = cell_spec("lstm", peephole=True).unsupported_persistent
    assert why == "the persistent LSTM kernels run only the plain cell, not peephole=True"
    auto = algo.choose_algo("auto", "lstm", "forward", 100, 16, 64, "float32", unsupported=why)
    assert (auto.used, auto.reason) == ("graph", f"auto: {why}")
    short = algo.choose_algo("auto", "lstm", "backward", 2, 16, 64, "float32", unsupported=why)
    assert short.used == "alternating" and "T=2 < 4" in short.reason
    for name in ("alternating", "graph"):
        assert algo.choose_algo(name, "lstm", "forward", 100, 16, 64, "float32",
                                unsupported=why).used == name
    with pytest.raises(ValueError, match="'persistent' cannot run this layer: the persistent "
                                         "LSTM kernels run only the plain cell, not peephole"):
        algo.choose_algo("persistent", "lstm", "forward", 100, 16, 64, "float32", unsupported=why)
    plain = algo.choose_algo("auto", "lstm", "forward", 100, 16, 64, "float32")
    assert plain.used == "persistent"
