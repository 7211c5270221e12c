"""The algorithms against the NumPy reference (float64) on random inputs: the persistent
kernels, graph replay, every step loop of the cell functions (device buffers poisoned) and
every algo= of the layers (GPU tests, marked), plus the checks of the ``algo=`` / ``graphs=``
keywords that fail before any device work (CPU)."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn.backend import reference_functions
from cuda_rnn.cellspec import PARAMETERS, SPECS
from cuda_rnn.cuda import algo
from cuda_rnn.reference.gru import gru_backward as ref_gru_backward
from cuda_rnn.reference.gru import gru_forward as ref_gru_forward
from cuda_rnn.reference.lstm import (
    lstm_backward as ref_lstm_backward,
    lstm_forward as ref_lstm_forward,
)

gpu = pytest.mark.gpu

# (T, B, H): odd sizes, B=1, T=1, H not a multiple of 32, one bench-like shape, long T.
SHAPES = [(1, 1, 8), (7, 3, 37), (13, 5, 100), (5, 16, 768), (9, 64, 130), (4, 2, 513),
          (1000, 3, 33)]
# Relative error bounds of ||out - ref|| / ||ref|| by precision of the recurrent product.
TOLERANCE = {("float32", False): 2e-5, ("float32", True): 5e-3, ("bfloat16", False): 5e-2}


def rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert np.isfinite(out).all(), "non-finite values: an element was not written"
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


def to_device(a: np.ndarray, dtype: str):
    """``a`` on the device in storage ``dtype`` (bfloat16 in whichever form CuPy keeps it)."""
    from cuda_helpers import to_device as to_storage

    return to_storage(a, dtype)[0]


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` as the device stores it, back in float64 (for a reference on the same inputs)."""
    from cuda_helpers import to_device as to_storage

    return to_storage(a, dtype)[1]


def host64(a) -> np.ndarray:
    from cuda_helpers import to_host64

    return to_host64(a)


def poisoned_like(shape: tuple[int, ...], dtype: str) -> object:
    """A device array of NaN in storage ``dtype``: an element the kernel does not write stays
    NaN and fails the comparison."""
    return to_device(np.full(shape, np.nan), dtype)


def random_lengths(rng: np.random.Generator, T: int, B: int) -> np.ndarray:
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    return lengths


@gpu
@pytest.mark.parametrize("dtype, allow_tf32", list(TOLERANCE))
@pytest.mark.parametrize("T, B, H", SHAPES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_lstm_persistent_matches_reference(rng: np.random.Generator, dtype: str,
                                           allow_tf32: bool, T: int, B: int, H: int,
                                           with_lengths: bool) -> None:
    import cupy

    from cuda_rnn.cuda import lstm, persistent, sequence
    from cuda_rnn.cuda.common import Dims

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
    h = poisoned_like((T + 1, B, H), dtype)
    c = poisoned_like((T + 1, B, H), dtype)
    h[0], c[0] = to_device(h0, dtype), to_device(c0, dtype)
    gates, tanh_c, y = (poisoned_like((T, B, 4 * H), dtype), poisoned_like((T, B, H), dtype),
                        poisoned_like((T, B, H), dtype))
    # The host always passes lengths: all T for full-length sequences.
    lengths_d = cupy.asarray(np.full(B, T) if lengths is None else lengths, cupy.int32)
    w_hh_d = to_device(w_hh, dtype)
    dims = Dims(T, B, H, H, dtype, H)
    sequence.run_persistent(lstm.SPEC, fwd, {
        "xp": cupy.asarray(xp.reshape(T, B, 4 * H), acc), "w_hh": w_hh_d, "lengths": lengths_d,
        "h": h, "c": c, "gates": gates, "tanh_c": tanh_c, "y": y}, dims, allow_tf32)
    tol = TOLERANCE[(dtype, allow_tf32)]
    assert rel_err(host64(y), y_ref) < tol
    assert rel_err(host64(h[T]), h_ref) < tol
    assert rel_err(host64(c[T]), c_ref) < tol
    assert rel_err(host64(gates), cache.gates) < tol

    dy = rng.standard_normal((T, B, H))
    dh_n, dc_n = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    ref = ref_lstm_backward(dy, dh_n, dc_n, cache)
    dh, dc = cupy.asarray(dh_n, acc), cupy.asarray(dc_n, acc)
    dgates = poisoned_like((T, B, 4 * H), dtype)
    sequence.run_persistent(lstm.SPEC, bwd, {
        "w_hh": w_hh_d, "lengths": lengths_d, "gates": gates, "c": c, "tanh_c": tanh_c,
        "dy": to_device(dy, dtype), "dh": dh, "dc": dc, "dgates": dgates}, dims, allow_tf32)
    h_prev = host64(h[:T]).reshape(T * B, H)
    flat = host64(dgates).reshape(T * B, 4 * H)
    _, dh0_ref, dc0_ref, _, dw_hh_ref, _, _ = ref
    assert rel_err(host64(dh), dh0_ref) < 4 * tol
    assert rel_err(host64(dc), dc0_ref) < 4 * tol
    assert rel_err(flat.T @ h_prev, dw_hh_ref) < 4 * tol


@gpu
@pytest.mark.parametrize("dtype, allow_tf32", list(TOLERANCE))
@pytest.mark.parametrize("T, B, H", SHAPES)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gru_persistent_matches_reference(rng: np.random.Generator, dtype: str,
                                          allow_tf32: bool, T: int, B: int, H: int,
                                          with_lengths: bool) -> None:
    import cupy

    from cuda_rnn.cuda import gru, persistent, sequence
    from cuda_rnn.cuda.common import Dims

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
    h = poisoned_like((T + 1, B, H), dtype)
    h[0] = to_device(h0, dtype)
    gates, hn, y = (poisoned_like((T, B, 3 * H), dtype), poisoned_like((T, B, H), dtype),
                    poisoned_like((T, B, H), dtype))
    # The host always passes lengths: all T for full-length sequences.
    lengths_d = cupy.asarray(np.full(B, T) if lengths is None else lengths, cupy.int32)
    w_hh_d = to_device(w_hh, dtype)
    dims = Dims(T, B, H, H, dtype, H)
    sequence.run_persistent(gru.SPEC, fwd, {
        "xp": cupy.asarray(xp.reshape(T, B, 3 * H), acc), "w_hh": w_hh_d,
        "bh": cupy.asarray(b_hh, acc), "lengths": lengths_d, "h": h, "gates": gates, "hn": hn,
        "y": y}, dims, allow_tf32)
    tol = TOLERANCE[(dtype, allow_tf32)]
    assert rel_err(host64(y), y_ref) < tol
    assert rel_err(host64(h[T]), h_ref) < tol
    assert rel_err(host64(hn), cache.hn) < tol

    dy = rng.standard_normal((T, B, H))
    dh_n = rng.standard_normal((B, H))
    ref = ref_gru_backward(dy, dh_n, cache)
    dh = cupy.asarray(dh_n, acc)
    dxp, dhp = poisoned_like((T, B, 3 * H), dtype), poisoned_like((T, B, 3 * H), dtype)
    sequence.run_persistent(gru.SPEC, bwd, {
        "w_hh": w_hh_d, "lengths": lengths_d, "h": h, "gates": gates, "hn": hn,
        "dy": to_device(dy, dtype), "dh": dh, "dxp": dxp, "dhp": dhp}, dims, allow_tf32)
    h_prev = host64(h[:T]).reshape(T * B, H)
    flat_hp = host64(dhp).reshape(T * B, 3 * H)
    flat_xp = host64(dxp).reshape(T * B, 3 * H)
    _, dh0_ref, _, dw_hh_ref, db_ih_ref, _ = ref
    assert rel_err(host64(dh), dh0_ref) < 4 * tol
    assert rel_err(flat_hp.T @ h_prev, dw_hh_ref) < 4 * tol
    assert rel_err(flat_xp.sum(axis=0), db_ih_ref) < 4 * tol


@gpu
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


@gpu
@pytest.mark.parametrize("algo_name", algo.ALGOS)
@pytest.mark.parametrize("cls", [cr.LSTM, cr.GRU])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_every_algo_of_the_layers_matches_the_reference(rng: np.random.Generator,
                                                        algo_name: str, cls: type,
                                                        dtype: str) -> None:
    T, B, I, H = 11, 5, 7, 96
    seed = int(rng.integers(1 << 30))
    gpu = cls(I, H, num_layers=2, bidirectional=True, dtype=dtype, device="cuda", seed=seed,
              algo=algo_name)
    cpu = cls(I, H, num_layers=2, bidirectional=True, dtype="float64", device="cpu", seed=seed)
    cpu.load_state_dict({k: host64(v) for k, v in gpu.state_dict().items()})
    x = rng.standard_normal((T, B, I))
    lengths = random_lengths(rng, T, B)
    y_gpu, _ = gpu(to_device(x, dtype), None, lengths=lengths)
    y_cpu, _ = cpu(rounded(x, dtype), None, lengths=lengths)
    tol = 5e-2 if dtype == "bfloat16" else (5e-3 if algo.tf32_allowed() else 1e-4)
    assert rel_err(host64(y_gpu), y_cpu) < tol
    dy = rng.standard_normal((T, B, 2 * H))
    dx_gpu, _ = gpu.backward(to_device(dy, dtype), None)
    dx_cpu, _ = cpu.backward(rounded(dy, dtype), None)
    assert rel_err(host64(dx_gpu), dx_cpu) < 4 * tol
    for name, grad in cpu.grads.items():
        assert rel_err(host64(gpu.grads[name]), grad) < 4 * tol, name
    assert gpu.algo_used in ("alternating", "graph", "persistent")
    assert isinstance(gpu.algo_reason, str) and gpu.algo_reason


# Every step loop each cell function runs (the RNN has no persistent kernel).
STEP_LOOP_CASES = [(cell, loop) for cell in ("lstm", "gru", "rnn") for loop in algo.STEP_LOOPS
                   if (cell, loop) != ("rnn", "persistent")]


def cell_problem(rng: np.random.Generator, cell: str, T: int, B: int, I: int, H: int,
                 with_lengths: bool) -> dict:
    """Random float64 inputs of one layer-direction call, forward and backward."""
    spec = SPECS[cell]
    shapes = spec.parameter_shapes(I, H, bias=True)
    k = 1 / np.sqrt(H)
    return {
        "x": rng.standard_normal((T, B, I)),
        "states": [rng.standard_normal((B, H)) * 0.5 for _ in spec.states],
        "weights": [rng.uniform(-k, k, shapes[name]) for name in PARAMETERS],
        "lengths": random_lengths(rng, T, B) if with_lengths else None,
        "dy": rng.standard_normal((T, B, H)),
        "dstates": [rng.standard_normal((B, H)) for _ in spec.states],
    }


def run_cell(cell: str, p: dict, dtype: str, loop: str, graphs) -> tuple[list, list]:
    """(outputs, gradients) of the device functions on ``p`` rounded to ``dtype``."""
    import cupy

    from cuda_rnn.cuda.backend import cell_functions

    fwd, bwd = cell_functions(cell)
    lengths = None if p["lengths"] is None else cupy.asarray(p["lengths"], cupy.int32)
    *outs, cache = fwd(to_device(p["x"], dtype), *[to_device(s, dtype) for s in p["states"]],
                       *[to_device(w, dtype) for w in p["weights"]], lengths,
                       algo=loop, graphs=graphs)
    grads = bwd(to_device(p["dy"], dtype), *[to_device(s, dtype) for s in p["dstates"]],
                cache, algo=loop, graphs=graphs)
    return outs, list(grads)


def reference_cell(cell: str, p: dict, dtype: str) -> tuple[list, list]:
    """(outputs, gradients) of the NumPy reference on the values the device sees."""
    fwd, bwd = reference_functions(cell)
    *outs, cache = fwd(rounded(p["x"], dtype), *[rounded(s, dtype) for s in p["states"]],
                       *[rounded(w, dtype) for w in p["weights"]], p["lengths"])
    grads = bwd(rounded(p["dy"], dtype), *[rounded(s, dtype) for s in p["dstates"]], cache)
    return outs, list(grads)


@gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("cell, loop", STEP_LOOP_CASES)
def test_cell_functions_match_the_reference_with_every_step_loop(
        rng: np.random.Generator, cell: str, loop: str, dtype: str) -> None:
    from cuda_rnn.cuda.graph import GraphCache
    from cuda_rnn.cuda.workspace import poisoned

    graphs = GraphCache()
    T, B, I, H = 9, 5, 6, 100
    tol = TOLERANCE[(dtype, dtype == "float32" and algo.tf32_allowed())]
    earlier = []
    with poisoned():
        # Three calls of one shape: "graph" captures on the first and replays on the others.
        for call in range(3):
            p = cell_problem(rng, cell, T, B, I, H, with_lengths=call > 0)
            outs, grads = run_cell(cell, p, dtype, loop, graphs)
            want_outs, want_grads = reference_cell(cell, p, dtype)
            for k, (got, want) in enumerate(zip(outs, want_outs)):
                assert rel_err(host64(got), want) < tol, (call, "output", k)
            for k, (got, want) in enumerate(zip(grads, want_grads)):
                if want is None:
                    assert got is None, (call, "gradient", k)
                else:
                    assert rel_err(host64(got), want) < 4 * tol, (call, "gradient", k)
            earlier.append([(a, host64(a)) for a in (*outs, *grads) if a is not None])
    for arrays in earlier:  # later calls left every earlier result as it was
        for array, snapshot in arrays:
            np.testing.assert_array_equal(host64(array), snapshot)
    assert len(graphs) == (2 if loop == "graph" else 0)


@gpu
def test_graph_step_loops_are_kept_per_shape(rng: np.random.Generator) -> None:
    from cuda_rnn.cuda.graph import GraphCache

    graphs = GraphCache()
    for T in (3, 4, 3):
        p = cell_problem(rng, "lstm", T, 2, 3, 16, with_lengths=False)
        outs, _ = run_cell("lstm", p, "float32", "graph", graphs)
        want, _ = reference_cell("lstm", p, "float32")
        assert rel_err(host64(outs[0]), want[0]) < TOLERANCE[("float32", True)]
    assert len(graphs) == 4  # (forward, backward) x (T=3, T=4)


@gpu
def test_persistent_refuses_what_it_cannot_run(rng: np.random.Generator) -> None:
    from cuda_rnn.cuda import lstm

    p = cell_problem(rng, "lstm", 3, 2, 3, 8, with_lengths=False)
    args = [to_device(a, "float64") for a in (p["x"], *p["states"], *p["weights"])]
    with pytest.raises(ValueError, match=r"algo: 'persistent' cannot run this forward call: "
                                         r"no persistent kernel for dtype 'float64'"):
        lstm.lstm_forward(*args, algo="persistent")


@pytest.mark.parametrize("cell", sorted(SPECS))
def test_step_loop_keywords_are_checked_before_any_device_work(
        rng: np.random.Generator, cell: str) -> None:
    from cuda_rnn.cuda.backend import cell_functions

    fwd, _ = cell_functions(cell)
    p = cell_problem(rng, cell, 3, 2, 3, 4, with_lengths=False)
    args = [p["x"], *p["states"], *p["weights"]]
    with pytest.raises(ValueError, match=r"algo: expected one of \('alternating', 'graph', "
                                         r"'persistent'\) \(resolve 'auto'.*got 'auto'"):
        fwd(*args, algo="auto")
    with pytest.raises(ValueError, match=r"graphs: expected a GraphCache for "
                                         r"algo='graph', got None"):
        fwd(*args, algo="graph")
    if cell == "rnn":
        with pytest.raises(ValueError, match=r"algo: 'persistent' runs only \('lstm', 'gru'\), "
                                             r"not 'rnn'"):
            fwd(*args, algo="persistent")
