"""The layers end to end on device="cuda" against device="cpu" with the same parameters.

Both layers get the same seed, so the dropout masks (drawn on the host from the layer's
generator) are the same too; the CUDA layer also loads the CPU layer's state_dict.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

CONFIGS = {
    "plain": dict(),
    "stacked-bidirectional": dict(num_layers=2, bidirectional=True),
    "batch-first-lengths": dict(batch_first=True, lengths=True),
    "bidirectional-lengths": dict(num_layers=2, bidirectional=True, lengths=True),
    "dropout": dict(num_layers=3, dropout=0.4),
    "no-bias": dict(num_layers=2, bias=False, bidirectional=True),
    "everything": dict(num_layers=2, bidirectional=True, batch_first=True, lengths=True,
                       dropout=0.25, bias=False),
}
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def _host(a: object) -> np.ndarray:
    from cuda_rnn.backend import to_numpy

    return np.asarray(to_numpy(a), dtype=np.float64)


def _close(got: object, want: object, dtype: str, what: str) -> None:
    g, w = _host(got), _host(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape}, expected {w.shape}"
    scale = max(float(np.abs(w).max()), 1e-300)
    err = float(np.abs(g - w).max())
    assert err <= TOLERANCE[dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_cuda_layer_matches_cpu_layer(rng: np.random.Generator, cell: str, config: str,
                                      dtype: str) -> None:
    import cuda_rnn as cr

    options = dict(CONFIGS[config])
    with_lengths = options.pop("lengths", False)
    T, B, I, H = 7, 4, 5, 9
    seed = int(rng.integers(1 << 30))
    cls = getattr(cr, cell)
    cpu = cls(I, H, dtype=dtype, device="cpu", seed=seed, **options)
    gpu = cls(I, H, dtype=dtype, device="cuda", seed=seed, **options)
    gpu.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    D = 2 if options.get("bidirectional") else 1
    L = options.get("num_layers", 1)
    batch_first = options.get("batch_first", False)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I)).astype(dtype)
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B)
        lengths[0] = T
    states = [rng.standard_normal((L * D, B, H)).astype(dtype) for _ in range(2)]
    dy = rng.standard_normal((B, T, D * H) if batch_first else (T, B, D * H)).astype(dtype)
    dstates = [rng.standard_normal((L * D, B, H)).astype(dtype) for _ in range(2)]
    if cell == "LSTM":
        state, dstate = tuple(states), tuple(dstates)
    else:
        state, dstate = states[0], dstates[0]
    y_cpu, s_cpu = cpu(x, state, lengths=lengths)
    y_gpu, s_gpu = gpu(x, state, lengths=lengths)
    _close(y_gpu, y_cpu, dtype, "y")
    finals_gpu = s_gpu if cell == "LSTM" else (s_gpu,)
    finals_cpu = s_cpu if cell == "LSTM" else (s_cpu,)
    for k, (g, c) in enumerate(zip(finals_gpu, finals_cpu, strict=True)):
        _close(g, c, dtype, f"final state {k}")
    dx_cpu, ds_cpu = cpu.backward(dy, dstate)
    dx_gpu, ds_gpu = gpu.backward(dy, dstate)
    _close(dx_gpu, dx_cpu, dtype, "dx")
    if cell == "LSTM":
        for k in range(2):
            _close(ds_gpu[k], ds_cpu[k], dtype, f"d state0 {k}")
    else:
        _close(ds_gpu, ds_cpu, dtype, "dh0")
    assert sorted(gpu.grads) == sorted(cpu.grads)
    for name in cpu.grads:
        _close(gpu.grads[name], cpu.grads[name], dtype, f"grad {name}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forget_bias_lstm_matches_cpu(dtype: str) -> None:
    import cuda_rnn as cr

    rng = np.random.default_rng(11)
    cpu = cr.LSTM(3, 5, num_layers=2, forget_bias=1.0, dtype=dtype, device="cpu", seed=3)
    gpu = cr.LSTM(3, 5, num_layers=2, forget_bias=1.0, dtype=dtype, device="cuda", seed=3)
    for name, p in cpu.parameters().items():
        _close(gpu.parameters()[name], p, dtype, name)
    x = rng.standard_normal((6, 2, 3))
    y_cpu, _ = cpu(x)
    y_gpu, _ = gpu(x)
    _close(y_gpu, y_cpu, dtype, "y")


LSTM_VARIANTS = {
    "peephole": dict(peephole=True),
    "no-forget-gate": dict(forget_gate=False),
    "proj": dict(proj_size=3),
    "peephole-no-forget-gate": dict(peephole=True, forget_gate=False),
    "all": dict(peephole=True, forget_gate=False, proj_size=4),
}


@pytest.mark.parametrize("algo", ["alternating", "graph", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("variant", sorted(LSTM_VARIANTS))
def test_lstm_variant_layer_matches_cpu(rng: np.random.Generator, variant: str, dtype: str,
                                        algo: str) -> None:
    import cuda_rnn as cr

    options = dict(LSTM_VARIANTS[variant], num_layers=2, bidirectional=True, batch_first=True,
                   dropout=0.25)
    T, B, I, H = 7, 4, 5, 9
    seed = int(rng.integers(1 << 30))
    cpu = cr.LSTM(I, H, dtype=dtype, device="cpu", seed=seed, **options)
    gpu = cr.LSTM(I, H, dtype=dtype, device="cuda", seed=seed, algo=algo, **options)
    gpu.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    P = options.get("proj_size") or H
    state = tuple(rng.standard_normal((4, B, n)).astype(dtype) for n in (P, H))
    dy = rng.standard_normal((B, T, 2 * P)).astype(dtype)
    dstate = tuple(rng.standard_normal((4, B, n)).astype(dtype) for n in (P, H))
    y_cpu, s_cpu = cpu(x, state, lengths=lengths)
    y_gpu, s_gpu = gpu(x, state, lengths=lengths)
    _close(y_gpu, y_cpu, dtype, "y")
    for k in range(2):
        _close(s_gpu[k], s_cpu[k], dtype, f"final state {k}")
    dx_cpu, ds_cpu = cpu.backward(dy, dstate)
    dx_gpu, ds_gpu = gpu.backward(dy, dstate)
    _close(dx_gpu, dx_cpu, dtype, "dx")
    for k in range(2):
        _close(ds_gpu[k], ds_cpu[k], dtype, f"d state0 {k}")
    assert sorted(gpu.grads) == sorted(cpu.grads)
    assert any(name.startswith("weight_ch") for name in gpu.grads) == ("peephole" in options)
    assert any(name.startswith("weight_hr") for name in gpu.grads) == ("proj_size" in options)
    for name in cpu.grads:
        _close(gpu.grads[name], cpu.grads[name], dtype, f"grad {name}")
    expected = "graph" if algo == "auto" else algo
    assert gpu.algo_used == expected
    if algo == "auto":
        assert "persistent LSTM kernels run only the plain cell" in gpu.algo_reason


@pytest.mark.parametrize("variant", sorted(LSTM_VARIANTS))
def test_lstm_variant_refuses_explicit_persistent(variant: str) -> None:
    import cuda_rnn as cr

    layer = cr.LSTM(3, 32, device="cuda", algo="persistent", **LSTM_VARIANTS[variant])
    x = np.random.default_rng(0).standard_normal((8, 2, 3))
    with pytest.raises(ValueError, match=r"'persistent' cannot run this layer: the persistent "
                                         r"LSTM kernels run only the plain cell, not "):
        layer(x)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("variant", sorted(LSTM_VARIANTS))
def test_lstm_variant_cell_matches_cpu(rng: np.random.Generator, variant: str,
                                       bias: bool) -> None:
    import cuda_rnn as cr

    options = LSTM_VARIANTS[variant]
    I, H = 5, 7
    P = options.get("proj_size") or H
    seed = int(rng.integers(1 << 30))
    cpu = cr.LSTMCell(I, H, bias=bias, dtype="float64", device="cpu", seed=seed, **options)
    gpu = cr.LSTMCell(I, H, bias=bias, dtype="float64", device="cuda", seed=seed, **options)
    gpu.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    for batch in ((3,), ()):  # batched, then unbatched
        x = [rng.standard_normal(batch + (I,)) for _ in range(3)]
        state_cpu = state_gpu = None
        for x_t in x:
            state_cpu = cpu(x_t, state_cpu)
            state_gpu = gpu(x_t, state_gpu)
        for k in range(2):
            _close(state_gpu[k], state_cpu[k], "float64", f"state {k}")
        dh, dc = rng.standard_normal(batch + (P,)), rng.standard_normal(batch + (H,))
        for _ in x:
            dx_cpu, (dh_cpu, dc_cpu) = cpu.backward(dh, dc)
            dx_gpu, (dh_gpu, dc_gpu) = gpu.backward(dh, dc)
            _close(dx_gpu, dx_cpu, "float64", "dx")
            _close(dh_gpu, dh_cpu, "float64", "dh")
            _close(dc_gpu, dc_cpu, "float64", "dc")
            dh, dc = dh_cpu, dc_cpu
    assert sorted(gpu.grads) == sorted(cpu.grads)
    for name in cpu.grads:
        _close(gpu.grads[name], cpu.grads[name], "float64", f"grad {name}")


@pytest.mark.parametrize("algo", ["alternating", "graph", "persistent"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU", "RNN"])
def test_weight_dropout_matches_cpu_with_the_same_masks(rng: np.random.Generator, cell: str,
                                                        algo: str) -> None:
    import cuda_rnn as cr

    if algo == "persistent" and cell == "RNN":
        pytest.skip("the RNN has no persistent kernel")
    dtype = "float32" if algo == "persistent" else "float64"
    cls = getattr(cr, cell)
    options = dict(num_layers=2, bidirectional=True, weight_dropout=0.4)
    cpu = cls(3, 32, dtype=dtype, device="cpu", seed=5, **options)
    gpu = cls(3, 32, dtype=dtype, device="cuda", seed=5, algo=algo, **options)
    gpu.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    x = rng.standard_normal((6, 4, 3)).astype(dtype)
    dy = rng.standard_normal((6, 4, 64)).astype(dtype)
    for _ in range(2):  # a new forward draws new masks, the same on both devices
        y_cpu, _ = cpu(x)
        y_gpu, _ = gpu(x)
        _close(y_gpu, y_cpu, dtype, "y")
        cpu.backward(dy)
        gpu.backward(dy)
    assert gpu.algo_used == algo
    for name in cpu.grads:
        _close(gpu.grads[name], cpu.grads[name], dtype, f"grad {name}")


#: The regularisers of the test below, by id (zoneout_cell is added for the LSTM). The
#: dropouts' 1 / (1 - p) = 2 is exact in bfloat16, so both devices scale by the same value;
#: "all" leaves out weight dropout, whose second factor 2 on the recurrence makes the small
#: RNN's gradients grow fourfold a step and bfloat16's rounding with them.
REGULARISED = {
    "recurrent": dict(recurrent_dropout=0.5, weight_dropout=0.5),
    "zoneout": dict(zoneout=0.3),
    "all": dict(zoneout=0.3, recurrent_dropout=0.5),
}


@pytest.mark.parametrize("algo", ["alternating", "graph", "auto"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("regularised", sorted(REGULARISED))
@pytest.mark.parametrize("cell, options", [
    ("LSTM", {}), ("GRU", {}), ("RNN", {}), ("LSTM", dict(proj_size=3, peephole=True)),
], ids=["lstm", "gru", "rnn", "lstm-proj-peephole"])
def test_regularised_layer_matches_cpu_with_the_same_masks(rng: np.random.Generator, cell: str,
                                                           options: dict, regularised: str,
                                                           dtype: str, algo: str) -> None:
    import cuda_rnn as cr
    from cuda_helpers import assert_matches
    from cuda_rnn.cuda.workspace import poisoned

    cls = getattr(cr, cell)
    options = dict(options, num_layers=2, bidirectional=True, **REGULARISED[regularised])
    if cell == "LSTM" and "zoneout" in options:
        options["zoneout_cell"] = 0.25
    cpu = cls(3, 7, dtype="float64", device="cpu", seed=5, **options)
    gpu = cls(3, 7, dtype=dtype, device="cuda", seed=5, algo=algo, **options)
    gpu.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    cpu.load_state_dict({k: _host(v) for k, v in gpu.state_dict().items()})  # rounded alike
    x = rng.standard_normal((6, 4, 3))
    lengths = np.array([6, 2, 5, 3])
    dy = rng.standard_normal((6, 4, 2 * cpu.output_size))
    dh = rng.standard_normal((4, 4, cpu.output_size))
    dstate = (dh, rng.standard_normal((4, 4, 7))) if cell == "LSTM" else dh
    with poisoned():
        y_gpu, state_gpu = gpu(x, None, lengths)
        dx_gpu, d0_gpu = gpu.backward(dy, dstate)
    y_cpu, state_cpu = cpu(x, None, lengths)
    dx_cpu, d0_cpu = cpu.backward(dy, dstate)
    assert_matches(y_gpu, y_cpu, dtype, "y")
    assert_matches(dx_gpu, dx_cpu, dtype, "dx")
    parts = (lambda s: s) if cell == "LSTM" else (lambda s: (s,))
    for names, gpu_side, cpu_side in ((("h_n", "c_n"), state_gpu, state_cpu),
                                      (("dh0", "dc0"), d0_gpu, d0_cpu)):
        for name, a, b in zip(names, parts(gpu_side), parts(cpu_side)):
            assert_matches(a, b, dtype, name)
    for name in cpu.grads:
        assert_matches(gpu.grads[name], cpu.grads[name], dtype, f"grad {name}")
    if algo == "auto":
        assert gpu.algo_used == "graph"
        assert ("run only the plain cell" if "proj_size" in options
                else "persistent kernels take no") in gpu.algo_reason
    layer = cls(3, 7, device="cuda", algo="persistent", **options)
    with pytest.raises(ValueError, match="persistent"):
        layer(x)


@pytest.mark.parametrize("algo, options, shape, dtype", [
    ("alternating", dict(peephole=True, zoneout=0.3, zoneout_cell=0.2), (6, 4, 7), "float64"),
    ("graph", dict(peephole=True, zoneout=0.3, zoneout_cell=0.2), (6, 4, 7), "float64"),
    # a call whose plain backward "auto" would run persistent, which takes no zoneout
    ("auto", dict(zoneout=0.3, zoneout_cell=0.2), (100, 16, 64), "float32"),
], ids=["peephole-alternating", "peephole-graph", "plain-auto"])
def test_eval_mode_zoneout_backward_on_cuda_matches_the_cpu(
        rng: np.random.Generator, algo: str, options: dict, shape: tuple, dtype: str) -> None:
    import cuda_rnn as cr
    from cuda_helpers import assert_matches

    T, B, H = shape
    cpu = cr.LSTM(3, H, dtype="float64", device="cpu", seed=5, **options).eval()
    gpu = cr.LSTM(3, H, dtype=dtype, device="cuda", seed=5, algo=algo, **options).eval()
    gpu.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    cpu.load_state_dict({k: _host(v) for k, v in gpu.state_dict().items()})  # rounded alike
    x, dy = rng.standard_normal((T, B, 3)), rng.standard_normal((T, B, H))
    for layer in (cpu, gpu):
        layer(x)
    dx_gpu, _ = gpu.backward(dy)
    dx_cpu, _ = cpu.backward(dy)
    assert_matches(dx_gpu, dx_cpu, dtype, "dx")
    for name in cpu.grads:
        assert_matches(gpu.grads[name], cpu.grads[name], dtype, f"grad {name}")
    assert gpu.algo_used != "persistent"


@pytest.mark.parametrize("algo", ["alternating", "graph"])
@pytest.mark.parametrize("cell, options", [
    ("LSTM", dict(zoneout=0.3, zoneout_cell=0.2)), ("GRU", dict(zoneout=0.3)),
    ("RNN", dict(zoneout=0.3)), ("LSTM", dict(proj_size=3, zoneout=0.3)),
], ids=["lstm", "gru", "rnn", "lstm-proj"])
def test_eval_mode_zoneout_on_cuda_is_its_expectation_as_on_the_cpu(
        rng: np.random.Generator, cell: str, options: dict, algo: str) -> None:
    import cuda_rnn as cr
    from cuda_helpers import assert_matches

    cls = getattr(cr, cell)
    cpu = cls(3, 7, dtype="float64", device="cpu", seed=5, **options).eval()
    gpu = cls(3, 7, dtype="float64", device="cuda", seed=5, algo=algo, **options).eval()
    plain = cls(3, 7, dtype="float64", device="cpu", seed=5,
                proj_size=options.get("proj_size", 0)) if cell == "LSTM" else cls(
        3, 7, dtype="float64", device="cpu", seed=5)
    for layer in (gpu, plain):
        layer.load_state_dict({k: _host(v) for k, v in cpu.state_dict().items()})
    x = rng.standard_normal((6, 4, 3))
    y_gpu, _ = gpu(x)
    y_cpu, _ = cpu(x)
    assert_matches(y_gpu, y_cpu, "float64", "y")
    assert np.abs(_host(y_gpu) - plain.eval()(x)[0]).max() > 1e-3  # the expectation mixes
