"""GPU suite for the algorithms: persistent kernels, graph replay and every algo= of the layers
against the NumPy reference (float64) on random inputs, outputs poisoned before each run."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn.cuda import algo
from cuda_rnn.reference.gru import gru_backward as ref_gru_backward
from cuda_rnn.reference.gru import gru_forward as ref_gru_forward
from cuda_rnn.reference.lstm import (
    lstm_backward as ref_lstm_backward,
    lstm_forward as ref_lstm_forward,
)

pytestmark = pytest.mark.gpu

# (T, B, H): odd sizes, B=1, T=1, H not a multiple of 32, and one bench-like shape.
SHAPES = [(1, 1, 8), (7, 3, 37), (13, 5, 100), (5, 16, 768), (9, 64, 130), (4, 2, 513)]
# Relative error bounds of ||out - ref|| / ||ref|| by precision of the recurrent product.
TOLERANCE = {("float32", False): 2e-5, ("float32", True): 5e-3, ("bfloat16", False): 5e-2}


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert np.isfinite(out).all(), "non-finite values: an element was not written"
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def to_device(a: np.ndarray, dtype: str):
    import cupy

    if dtype == "bfloat16":
        import ml_dtypes  # shipped with CuPy's bf16 support

        return cupy.asarray(a.astype(ml_dtypes.bfloat16))
    return cupy.asarray(a.astype(dtype))


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` as the device stores it, back in float64 (for a reference on the same inputs)."""
    return np.asarray(to_device(a, dtype).get(), np.float64)


def poisoned_like(shape: tuple[int, ...], dtype) -> object:
    import cupy

    out = cupy.empty(shape, dtype)
    out.fill(np.nan)
    return out


def random_lengths(rng: np.random.Generator, T: int, B: int) -> np.ndarray:
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    return lengths


@pytest.mark.parametrize("dtype, allow_tf32", list(TOLERANCE))
@pytest.mark.parametrize("T, B, H", SHAPES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_persistent_matches_reference(rng: np.random.Generator, dtype: str,
                                           allow_tf32: bool, T: int, B: int, H: int,
                                           with_lengths: bool) -> None:
    import cupy

    from cuda_rnn.cuda import persistent

    acc = np.float32
    s = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, H))
    w_ih = rounded(rng.uniform(-s, s, (4 * H, H)), dtype)
    w_hh = rounded(rng.uniform(-s, s, (4 * H, H)), dtype)
    b = rng.uniform(-s, s, 4 * H)
    h0 = rounded(rng.standard_normal((B, H)), dtype)
    c0 = rounded(rng.standard_normal((B, H)), dtype)
    lengths = random_lengths(rng, T, B) if with_lengths else None
    xp = x.reshape(T * B, H) @ w_ih.T + b
    y_ref, h_ref, c_ref, cache = ref_lstm_forward(x, h0, c0, w_ih, w_hh, b, None, lengths)

    limits = persistent.device_limits()
    fwd = persistent.plan_persistent("lstm", "forward", H, B, dtype, limits)
    bwd = persistent.plan_persistent("lstm", "backward", H, B, dtype, limits)
    assert fwd.fits and bwd.fits, (fwd.reason, bwd.reason)
    st = to_device(np.zeros(1), dtype).dtype
    h = poisoned_like((T + 1, B, H), st)
    c = poisoned_like((T + 1, B, H), st)
    h[0], c[0] = to_device(h0, dtype), to_device(c0, dtype)
    gates, tanh_c, y = (poisoned_like((T, B, 4 * H), st), poisoned_like((T, B, H), st),
                        poisoned_like((T, B, H), st))
    lengths_d = None if lengths is None else cupy.asarray(lengths, cupy.int32)
    persistent.lstm_forward_persistent(fwd, cupy.asarray(xp.reshape(T, B, 4 * H), acc),
                                       to_device(w_hh, dtype), lengths_d, h, c, gates, tanh_c,
                                       y, allow_tf32)
    tol = TOLERANCE[(dtype, allow_tf32)]
    assert rel_err(y.get(), y_ref) < tol
    assert rel_err(h[T].get(), h_ref) < tol
    assert rel_err(c[T].get(), c_ref) < tol
    assert rel_err(gates.get(), cache.gates) < tol

    dy = rng.standard_normal((T, B, H))
    dh_n, dc_n = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    ref = ref_lstm_backward(dy, dh_n, dc_n, cache)
    dh, dc = cupy.asarray(dh_n, acc), cupy.asarray(dc_n, acc)
    dgates = poisoned_like((T, B, 4 * H), st)
    persistent.lstm_backward_persistent(bwd, to_device(w_hh, dtype), lengths_d, gates, c,
                                        tanh_c, to_device(dy, dtype), dh, dc, dgates,
                                        allow_tf32)
    h_prev = np.asarray(h[:T].get(), np.float64).reshape(T * B, H)
    flat = np.asarray(dgates.get(), np.float64).reshape(T * B, 4 * H)
    _, dh0_ref, dc0_ref, _, dw_hh_ref, _, _ = ref
    assert rel_err(dh.get(), dh0_ref) < 4 * tol
    assert rel_err(dc.get(), dc0_ref) < 4 * tol
    assert rel_err(flat.T @ h_prev, dw_hh_ref) < 4 * tol


@pytest.mark.parametrize("dtype, allow_tf32", list(TOLERANCE))
@pytest.mark.parametrize("T, B, H", SHAPES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gru_persistent_matches_reference(rng: np.random.Generator, dtype: str,
                                          allow_tf32: bool, T: int, B: int, H: int,
                                          with_lengths: bool) -> None:
    import cupy

    from cuda_rnn.cuda import persistent

    acc = np.float32
    s = 1 / np.sqrt(H)
    x = rng.standard_normal((T, B, H))
    w_ih = rounded(rng.uniform(-s, s, (3 * H, H)), dtype)
    w_hh = rounded(rng.uniform(-s, s, (3 * H, H)), dtype)
    b_ih, b_hh = rng.uniform(-s, s, 3 * H), rng.uniform(-s, s, 3 * H)
    h0 = rounded(rng.standard_normal((B, H)), dtype)
    lengths = random_lengths(rng, T, B) if with_lengths else None
    xp = x.reshape(T * B, H) @ w_ih.T + b_ih
    y_ref, h_ref, cache = ref_gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lengths)

    limits = persistent.device_limits()
    fwd = persistent.plan_persistent("gru", "forward", H, B, dtype, limits)
    bwd = persistent.plan_persistent("gru", "backward", H, B, dtype, limits)
    assert fwd.fits and bwd.fits, (fwd.reason, bwd.reason)
    st = to_device(np.zeros(1), dtype).dtype
    h = poisoned_like((T + 1, B, H), st)
    h[0] = to_device(h0, dtype)
    gates, hn, y = (poisoned_like((T, B, 3 * H), st), poisoned_like((T, B, H), st),
                    poisoned_like((T, B, H), st))
    lengths_d = None if lengths is None else cupy.asarray(lengths, cupy.int32)
    persistent.gru_forward_persistent(fwd, cupy.asarray(xp.reshape(T, B, 3 * H), acc),
                                      to_device(w_hh, dtype), cupy.asarray(b_hh, acc),
                                      lengths_d, h, gates, hn, y, allow_tf32)
    tol = TOLERANCE[(dtype, allow_tf32)]
    assert rel_err(y.get(), y_ref) < tol
    assert rel_err(h[T].get(), h_ref) < tol
    assert rel_err(hn.get(), cache.hn) < tol

    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    ref = ref_gru_backward(dy, dh_n, cache)
    dh = cupy.asarray(dh_n, acc)
    dxp, dhp = poisoned_like((T, B, 3 * H), st), poisoned_like((T, B, 3 * H), st)
    persistent.gru_backward_persistent(bwd, to_device(w_hh, dtype), lengths_d, h, gates, hn,
                                       to_device(dy, dtype), dh, dxp, dhp, allow_tf32)
    h_prev = np.asarray(h[:T].get(), np.float64).reshape(T * B, H)
    flat_hp = np.asarray(dhp.get(), np.float64).reshape(T * B, 3 * H)
    flat_xp = np.asarray(dxp.get(), np.float64).reshape(T * B, 3 * H)
    _, dh0_ref, _, dw_hh_ref, db_ih_ref, _ = ref
    assert rel_err(dh.get(), dh0_ref) < 4 * tol
    assert rel_err(flat_hp.T @ h_prev, dw_hh_ref) < 4 * tol
    assert rel_err(flat_xp.sum(axis=0), db_ih_ref) < 4 * tol


def test_graph_cache_replays_with_fresh_inputs_and_outputs(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.cuda.graph import GraphCache

    cache = GraphCache()
    n = 1000

    def allocate() -> dict:
        return {"a": cupy.empty(n, cupy.float32), "out": cupy.empty(n, cupy.float32)}

    def body(buf: dict) -> None:
        cupy.multiply(buf["a"], 2.0, out=buf["out"])
        buf["out"] += buf["a"]

    results = []
    for _ in range(3):
        a = rng.standard_normal(n).astype(np.float32)
        out = cache.run(("triple", n), allocate, body, {"a": cupy.asarray(a)}, ("out",))["out"]
        results.append(out)
        np.testing.assert_allclose(out.get(), 3 * a, rtol=1e-6)
    assert len(cache) == 1
    assert results[0].data.ptr != results[1].data.ptr  # fresh arrays, not the static buffer
    with pytest.raises(ValueError, match=r"a: expected shape \(1000,\)"):
        cache.run(("triple", n), allocate, body, {"a": cupy.zeros(3, cupy.float32)}, ("out",))


@pytest.mark.parametrize("algo_name", algo.ALGOS)
@pytest.mark.parametrize("cls", [cr.LSTM, cr.GRU])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_algo_of_the_layers_matches_the_reference(rng: np.random.Generator,
                                                        algo_name: str, cls: type,
                                                        dtype: str) -> None:
    import cupy

    T, B, I, H = 11, 5, 7, 96
    seed = int(rng.integers(1 << 30))
    gpu = cls(I, H, num_layers=2, bidirectional=True, dtype=dtype, device="cuda", seed=seed,
              algo=algo_name)
    cpu = cls(I, H, num_layers=2, bidirectional=True, dtype="float64", device="cpu", seed=seed)
    cpu.load_state_dict({k: np.asarray(cupy.asnumpy(v), np.float64)
                         for k, v in gpu.state_dict().items()})
    x = rng.standard_normal((T, B, I))
    lengths = random_lengths(rng, T, B)
    y_gpu, _ = gpu(to_device(x, dtype), None, lengths=lengths)
    y_cpu, _ = cpu(rounded(x, dtype), None, lengths=lengths)
    tol = 5e-2 if dtype == "bfloat16" else (5e-3 if algo.tf32_allowed() else 1e-4)
    assert rel_err(cupy.asnumpy(y_gpu), y_cpu) < tol
    dy = rng.standard_normal((T, B, 2 * H))
    dx_gpu, _ = gpu.backward(to_device(dy, dtype), None)
    dx_cpu, _ = cpu.backward(rounded(dy, dtype), None)
    assert rel_err(cupy.asnumpy(dx_gpu), dx_cpu) < 4 * tol
    for name, grad in cpu.grads.items():
        assert rel_err(cupy.asnumpy(gpu.grads[name]), grad) < 4 * tol, name
    assert gpu.algo_used in ("alternating", "graph", "persistent")
    assert isinstance(gpu.algo_reason, str) and gpu.algo_reason
