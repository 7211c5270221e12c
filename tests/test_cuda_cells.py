"""Each CUDA cell function against its NumPy twin (float64 on the same rounded inputs).

Every device buffer the functions allocate starts as NaN (workspace.poisoned), so an element
a kernel forgets to write fails the comparison. Gradients are compared too.
"""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.reference import gru as ref_gru
from cuda_rnn.reference import lstm as ref_lstm
from cuda_rnn.reference import rnn as ref_rnn

pytestmark = pytest.mark.gpu

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
DTYPES = ("float64", "float32", "float16", "bfloat16")
# (T, B, I, H): B=1, T=1, H=1, odd sizes, H not a multiple of 32, H above one block of 256.
SHAPES = [(1, 1, 1, 1), (1, 3, 5, 7), (6, 1, 3, 1), (5, 4, 33, 31), (7, 5, 17, 69),
          (3, 2, 8, 130), (4, 3, 6, 300)]
LONG = (1000, 3, 5, 33)


def _problem(rng: np.random.Generator, cell: str, shape: tuple[int, int, int, int],
             bias: bool, with_lengths: bool) -> dict[str, np.ndarray | None]:
    from cuda_helpers import random_problem

    return random_problem(rng, shape, GATES[cell], bias, with_lengths)


def _run(cell: str, p: dict, dtype: str, nonlinearity: str = "tanh") -> None:
    from cuda_rnn.cuda import gru, lstm, rnn
    from cuda_helpers import assert_matches, problem_on_device
    from cuda_rnn.cuda.workspace import poisoned

    dev, host = problem_on_device(p, dtype)
    common = ("w_ih", "w_hh", "b_ih", "b_hh")
    with poisoned():
        if cell == "lstm":
            args = [dev[k] for k in ("x", "h0", "c0", *common)]
            y, h_n, c_n, cache = lstm.lstm_forward(*args, dev["lengths"])
            grads = lstm.lstm_backward(dev["dy"], dev["dh_n"], dev["dc_n"], cache)
            ry, rh, rc, rcache = ref_lstm.lstm_forward(
                *[host[k] for k in ("x", "h0", "c0", *common)], host["lengths"])
            rgrads = ref_lstm.lstm_backward(host["dy"], host["dh_n"], host["dc_n"], rcache)
            outs, routs = (y, h_n, c_n), (ry, rh, rc)
            names = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh")
        else:
            fwd, bwd = {"gru": (gru.gru_forward, gru.gru_backward),
                        "rnn": (rnn.rnn_forward, rnn.rnn_backward)}[cell]
            rfwd, rbwd = {"gru": (ref_gru.gru_forward, ref_gru.gru_backward),
                          "rnn": (ref_rnn.rnn_forward, ref_rnn.rnn_backward)}[cell]
            extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
            y, h_n, cache = fwd(*[dev[k] for k in ("x", "h0", *common)], dev["lengths"], **extra)
            grads = bwd(dev["dy"], dev["dh_n"], cache)
            ry, rh, rcache = rfwd(*[host[k] for k in ("x", "h0", *common)], host["lengths"],
                                  **extra)
            rgrads = rbwd(host["dy"], host["dh_n"], rcache)
            outs, routs = (y, h_n), (ry, rh)
            names = ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")
    for name, got, want in zip(("y", "h_n", "c_n"), outs, routs):
        assert_matches(got, want, dtype, f"{cell} {name}")
    for name, got, want in zip(names, grads, rgrads):
        assert_matches(got, want, dtype, f"{cell} {name}")


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(GATES))
def test_cell_matches_reference(rng: np.random.Generator, cell: str, dtype: str,
                                shape: tuple, bias: bool, with_lengths: bool) -> None:
    _run(cell, _problem(rng, cell, shape, bias, with_lengths), dtype)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
def test_rnn_nonlinearities_match_reference(rng: np.random.Generator, dtype: str,
                                            nonlinearity: str) -> None:
    _run("rnn", _problem(rng, "rnn", (6, 3, 5, 37), True, True), dtype, nonlinearity)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", sorted(GATES))
def test_long_sequence_matches_reference(rng: np.random.Generator, cell: str,
                                         dtype: str) -> None:
    _run(cell, _problem(rng, cell, LONG, True, True), dtype)


@pytest.mark.parametrize("cell", sorted(GATES))
def test_outputs_are_fresh_arrays(rng: np.random.Generator, cell: str) -> None:
    from cuda_rnn.cuda import gru, lstm, rnn
    from cuda_helpers import to_device

    p = _problem(rng, cell, (4, 3, 5, 6), True, False)
    dev = {k: to_device(v, "float32")[0] for k, v in p.items() if k != "lengths"}
    common = [dev[k] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    first_x = dev["x"]
    second_x = to_device(rng.standard_normal(p["x"].shape), "float32")[0]
    if cell == "lstm":
        run = lambda x: lstm.lstm_forward(x, dev["h0"], dev["c0"], *common)[:3]  # noqa: E731
    else:
        fwd = gru.gru_forward if cell == "gru" else rnn.rnn_forward
        run = lambda x: fwd(x, dev["h0"], *common)[:2]  # noqa: E731
    first = run(first_x)
    saved = [a.get() for a in first]
    run(second_x)
    for before, after in zip(saved, first):
        np.testing.assert_array_equal(before, after.get())


def test_rnn_rejects_unknown_nonlinearity(rng: np.random.Generator) -> None:
    from cuda_rnn.cuda import rnn
    from cuda_helpers import to_device

    p = _problem(rng, "rnn", (2, 2, 3, 4), True, False)
    d = {k: to_device(v, "float32")[0] for k, v in p.items() if k != "lengths"}
    with pytest.raises(ValueError, match="nonlinearity"):
        rnn.rnn_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"],
                        nonlinearity="gelu")


def test_mismatched_state_shape_names_the_argument(rng: np.random.Generator) -> None:
    from cuda_rnn.cuda import lstm
    from cuda_helpers import to_device

    p = _problem(rng, "lstm", (2, 3, 4, 5), True, False)
    d = {k: to_device(v, "float32")[0] for k, v in p.items() if k != "lengths"}
    with pytest.raises(ValueError, match=r"c0: expected shape \(3, 5\), got \(3, 4\)"):
        lstm.lstm_forward(d["x"], d["h0"], d["c0"][:, :4], d["w_ih"], d["w_hh"],
                          d["b_ih"], d["b_hh"])


def test_backward_rejects_the_cache_of_another_cell(rng: np.random.Generator) -> None:
    from cuda_rnn.cuda import gru, lstm
    from cuda_helpers import to_device

    p = _problem(rng, "gru", (2, 3, 4, 5), True, False)
    d = {k: to_device(v, "float32")[0] for k, v in p.items() if k != "lengths"}
    y, _, cache = gru.gru_forward(d["x"], d["h0"], d["w_ih"], d["w_hh"], d["b_ih"], d["b_hh"])
    with pytest.raises(ValueError,
                       match="cache: expected one from lstm_forward, got one from gru_forward"):
        lstm.lstm_backward(y, None, None, cache)
