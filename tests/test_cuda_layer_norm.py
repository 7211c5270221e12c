"""The layer-normalised LSTM on CUDA (kernels_cu/lstm_layer_norm.cu, a block per batch row)
against the NumPy layer and cell, with every variant and regulariser, on the simulator.

The layer-norm gains and bias are moved off their initial ones and zeros, so that a kernel
that ignored one would fail; every buffer starts as NaN (workspace.poisoned).
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

VARIANTS = {
    "plain": {},
    "peephole": dict(peephole=True),
    "proj": dict(proj_size=3),
    "carousel": dict(forget_gate=False),
    "regularised": dict(zoneout=0.3, zoneout_cell=0.2, recurrent_dropout=0.5,
                        weight_dropout=0.5),
    "all": dict(peephole=True, proj_size=3, zoneout=0.3, zoneout_cell=0.2,
                recurrent_dropout=0.5),
}


def _host(a):
    from cuda_rnn.backend import to_numpy

    return np.asarray(to_numpy(a), dtype=np.float64)


def _run(layer, x, initial, lengths, dy, dstate) -> dict:
    """Outputs, input and state gradients and weight gradients of one forward and backward,
    by name, on the layer's device."""
    y, (h, c) = layer(x, initial, lengths)
    dx, (dh, dc) = layer.backward(dy, dstate)
    out = {"y": y, "h_n": h, "c_n": c, "dx": dx, "dh0": dh, "dc0": dc}
    out.update({f"grad {k}": v for k, v in layer.grads.items()})
    return out


def _moved_state(rng: np.random.Generator, layer) -> dict:
    state = {k: _host(v) for k, v in layer.state_dict().items()}
    for name in state:
        if name.startswith("ln_"):
            state[name] = state[name] + 0.3 * rng.standard_normal(state[name].shape)
    return state


#: (H, variant, dtype): every variant in every dtype at H=7, and at H=300 (more units than a
#: block has threads) the plain cell and all variants in float32.
CASES = [(7, v, d) for v in sorted(VARIANTS) for d in ("float64", "float32", "bfloat16")] + [
    (300, v, "float32") for v in ("plain", "all")]


@pytest.mark.parametrize("algo", ["alternating", "graph", "auto"])
@pytest.mark.parametrize("hidden, variant, dtype", CASES,
                         ids=[f"H{h}-{v}-{d}" for h, v, d in CASES])
def test_layer_norm_lstm_matches_cpu(rng: np.random.Generator, variant: str, dtype: str,
                                     algo: str, hidden: int) -> None:
    import cuda_rnn as cr
    from cuda_helpers import TOLERANCES, assert_matches
    from cuda_rnn.cuda.workspace import poisoned

    # bfloat16's rounding compounds through the normalisations from step to step (for the plain
    # cell at H=32 from 0.4% of y at the first step to 3% at the sixth): it runs one layer over
    # three steps, the others two bidirectional layers over six.
    narrow = dtype == "bfloat16"
    stack = dict(num_layers=1) if narrow else dict(num_layers=2, bidirectional=True)
    options = dict(VARIANTS[variant], layer_norm=True, **stack)
    cpu = cr.LSTM(3, hidden, dtype="float64", device="cpu", seed=5, **options)
    gpu = cr.LSTM(3, hidden, dtype=dtype, device="cuda", seed=5, algo=algo, **options)
    gpu.load_state_dict(_moved_state(rng, cpu))
    cpu.load_state_dict({k: _host(v) for k, v in gpu.state_dict().items()})  # rounded alike
    T, B, LD = (3, 4, 1) if narrow else (6, 4, 4)
    x = rng.standard_normal((T, B, 3))
    lengths = np.array([3, 1, 2, 3]) if narrow else np.array([6, 2, 5, 3])
    P = cpu.output_size
    dy = rng.standard_normal((T, B, LD // cpu.num_layers * P))
    dstate = (rng.standard_normal((LD, B, P)), rng.standard_normal((LD, B, hidden)))
    # Random initial states: LN of h_0 W_hh^T = 0 would divide by sqrt(eps), and multiply
    # every rounding error by 300.
    initial = (rng.standard_normal((LD, B, P)), rng.standard_normal((LD, B, hidden)))
    results = {}
    with poisoned():
        results["gpu"] = _run(gpu, x, initial, lengths, dy, dstate)
    results["cpu"] = _run(cpu, x, initial, lengths, dy, dstate)
    if dtype == "float32":
        # A row of units with a small spread amplifies rounding through its normalisation, so
        # float32 is held to NumPy's own float32 layer: within 8 times its error where that is
        # beyond the fixed tolerance's eighth (two float32 runs summing in other orders, cuBLAS
        # against OpenBLAS, a block's tree against pairwise sums, measured up to 5 times apart
        # here).
        single = cr.LSTM(3, hidden, dtype="float32", device="cpu", seed=5, **options)
        single.load_state_dict({k: _host(v) for k, v in gpu.state_dict().items()})
        results["float32"] = _run(single, x, initial, lengths, dy, dstate)
    assert sorted(results["gpu"]) == sorted(results["cpu"])
    for name, want in results["cpu"].items():
        got = results["gpu"][name]
        if "float32" in results:
            numpy_error = float(np.abs(_host(results["float32"][name]) - want).max())
            if 8 * numpy_error > TOLERANCES["float32"] * max(np.abs(want).max(), 1.0):
                error = float(np.abs(_host(got) - want).max())
                assert error <= 8 * numpy_error, f"{name}: {error} > 8 * {numpy_error}"
                continue
        if narrow:
            # bfloat16 keeps 8 bits: a term of the layer norm's backward multiplies three or
            # four rounded values (hhat, chat, the gates, dG), and a parameter's gradient sums
            # 12 such terms, which cancel: about 3e-2 at one standard deviation. The float64
            # runs hold the equations; this one holds the bfloat16 path to 1e-1.
            scale = max(float(np.abs(want).max()), 1.0)
            error = float(np.abs(_host(got) - want).max())
            assert error <= 1e-1 * scale, f"{name} (bfloat16): {error} > {1e-1 * scale}"
            continue
        assert_matches(got, want, dtype, name)
    if algo == "auto":
        assert gpu.algo_used in ("alternating", "graph")


def test_layer_norm_refuses_explicit_persistent() -> None:
    import cuda_rnn as cr

    layer = cr.LSTM(3, 8, layer_norm=True, device="cuda", algo="persistent")
    with pytest.raises(ValueError, match="persistent.*layer_norm=True"):
        layer(np.random.default_rng(0).standard_normal((4, 2, 3)))


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
def test_layer_norm_cell_matches_cpu(rng: np.random.Generator, unbatched: bool) -> None:
    import cuda_rnn as cr
    from cuda_helpers import assert_matches

    cpu = cr.LSTMCell(3, 5, layer_norm=True, peephole=True, dtype="float64", device="cpu",
                      seed=2)
    gpu = cr.LSTMCell(3, 5, layer_norm=True, peephole=True, dtype="float64", device="cuda",
                      seed=2)
    state = _moved_state(rng, cpu)
    cpu.load_state_dict(state)
    gpu.load_state_dict(state)
    shape = (3,) if unbatched else (2, 3)
    xs = [rng.standard_normal(shape) for _ in range(3)]
    outs = {}
    for name, cell in (("cpu", cpu), ("gpu", gpu)):
        h = c = None
        for x in xs:
            h, c = cell(x, None if h is None else (h, c))
        dx, (dh, dc) = cell.backward(np.ones(h.shape), np.ones(c.shape))
        outs[name] = (h, c, dx, dh, dc)
    for what, a, b in zip(("h", "c", "dx", "dh", "dc"), outs["gpu"], outs["cpu"]):
        assert_matches(a, b, "float64", what)
    for name in cpu.grads:
        assert_matches(gpu.grads[name], cpu.grads[name], "float64", f"grad {name}")
