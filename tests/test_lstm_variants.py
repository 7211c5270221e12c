"""The LSTM variants of DESIGN.md (proj_size, peephole, forget_gate=False, forget_bias) on the
NumPy path: finite differences, torch.nn.LSTM(proj_size=...), the equations, the errors."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn.cellspec import cell_spec
from cuda_rnn.reference.lstm import lstm_forward
from helpers import rel_err

VARIANTS = {
    "proj": dict(proj_size=2),
    "peephole": dict(peephole=True),
    "no_forget": dict(forget_gate=False),
    "forget_bias": dict(forget_bias=1.5),
}
ALONE = [(k,) for k in VARIANTS]
# forget_bias needs the forget gate: that pair is an error, tested below.
PAIRS = [p for p in itertools.combinations(VARIANTS, 2) if set(p) != {"no_forget", "forget_bias"}]


def _options(names: tuple[str, ...]) -> dict:
    return {k: v for n in names for k, v in VARIANTS[n].items()}


def _states(rng, layer, batch):
    LD = layer.num_layers * layer.num_directions
    return (rng.standard_normal((LD, batch, layer.output_size)),
            rng.standard_normal((LD, batch, layer.hidden_size)))


@pytest.mark.parametrize("names", ALONE + PAIRS + [tuple(k for k in VARIANTS if k != "forget_bias")],
                         ids="-".join)
@pytest.mark.parametrize("config", [dict(num_layers=2), dict(bidirectional=True),
                                    dict(num_layers=2, bidirectional=True, batch_first=True,
                                         bias=False)],
                         ids=["2layers", "bidirectional", "2layers-bidir-bf-nobias"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_layer_gradcheck(rng, names, config, with_lengths):
    options = _options(names)
    if not config.get("bias", True) and "forget_bias" in options:
        pytest.skip("forget_bias needs a bias (tested below)")
    layer = cr.LSTM(3, 4, dtype="float64", device="cpu", seed=int(rng.integers(1000)),
                    **config, **options)
    T, B = 5, 3
    x = rng.standard_normal((B, T, 3) if layer.batch_first else (T, B, 3))
    lengths = np.array([5, 2, 4]) if with_lengths else None
    result = cr.gradcheck(layer, x, _states(rng, layer, B), lengths)
    assert set(result.errors) >= {"x", "h0", "c0", *layer.parameters()}
    assert result.max_error < 1e-6, result.errors


@pytest.mark.parametrize("names", ALONE + PAIRS, ids="-".join)
def test_cell_gradcheck(rng, names):
    cell = cr.LSTMCell(3, 5, dtype="float64", device="cpu", seed=2, **_options(names))
    P = cell.spec.output_size(5)
    x = rng.standard_normal((4, 3))
    state = (rng.standard_normal((4, P)), rng.standard_normal((4, 5)))
    result = cr.gradcheck(cell, x, state)
    assert set(result.errors) >= {"x", *cell.parameters()}
    assert result.max_error < 1e-6, result.errors


def test_parameter_names_and_shapes():
    layer = cr.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2, peephole=True,
                    device="cpu")
    shapes = {k: v.shape for k, v in layer.parameters().items()}
    assert shapes["weight_ih_l0"] == (24, 3)
    assert shapes["weight_hh_l0"] == (24, 2)
    assert shapes["weight_ih_l1_reverse"] == (24, 4)  # D * P inputs
    assert shapes["weight_hr_l1_reverse"] == (2, 6)
    assert shapes["weight_ch_l0"] == (18,)
    no_forget = cr.LSTM(3, 6, forget_gate=False, peephole=True, device="cpu")
    shapes = {k: v.shape for k, v in no_forget.parameters().items()}
    assert shapes == {"weight_ih_l0": (18, 3), "weight_hh_l0": (18, 6), "bias_ih_l0": (18,),
                      "bias_hh_l0": (18,), "weight_ch_l0": (12,)}


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def test_one_step_follows_the_equations(rng):
    """One step of every option together against the equations of DESIGN.md, written out."""
    H, P, I, B = 5, 3, 4, 2
    w_ih = rng.standard_normal((3 * H, I))
    w_hh = rng.standard_normal((3 * H, P))
    b_ih, b_hh = rng.standard_normal(3 * H), rng.standard_normal(3 * H)
    w_hr = rng.standard_normal((P, H))
    w_ci, w_co = rng.standard_normal(H), rng.standard_normal(H)
    x, h0, c0 = rng.standard_normal((1, B, I)), rng.standard_normal((B, P)), rng.standard_normal((B, H))
    y, h1, c1, _ = lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=w_hr,
                                w_ch=np.concatenate([w_ci, w_co]), forget_gate=False)
    a = x[0] @ w_ih.T + b_ih + h0 @ w_hh.T + b_hh
    a_i, a_g, a_o = np.split(a, 3, axis=1)
    i = _sigmoid(a_i + w_ci * c0)
    c = c0 + i * np.tanh(a_g)
    o = _sigmoid(a_o + w_co * c)
    h = (o * np.tanh(c)) @ w_hr.T
    np.testing.assert_allclose(c1, c, rtol=1e-12)
    np.testing.assert_allclose(h1, h, rtol=1e-12)
    np.testing.assert_allclose(y[0], h, rtol=1e-12)


def test_forget_gate_peepholes_read_the_previous_cell(rng):
    H, I, B = 4, 3, 2
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    w_ch = rng.standard_normal(3 * H)
    x, h0, c0 = rng.standard_normal((1, B, I)), rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, h1, c1, _ = lstm_forward(x, h0, c0, w_ih, w_hh, None, None, w_ch=w_ch)
    a_i, a_f, a_g, a_o = np.split(x[0] @ w_ih.T + h0 @ w_hh.T, 4, axis=1)
    w_ci, w_cf, w_co = np.split(w_ch, 3)
    c = _sigmoid(a_f + w_cf * c0) * c0 + _sigmoid(a_i + w_ci * c0) * np.tanh(a_g)
    np.testing.assert_allclose(c1, c, rtol=1e-12)
    np.testing.assert_allclose(h1, _sigmoid(a_o + w_co * c) * np.tanh(c), rtol=1e-12)


def test_no_forget_gate_is_a_constant_error_carousel(rng):
    """Without a forget gate dc_{t-1} = dc_t along the cell path: with i = 0 (a very negative
    input-gate bias) the cell carries c_0 and its gradient unchanged through every step."""
    layer = cr.LSTM(2, 3, forget_gate=False, dtype="float64", device="cpu", seed=1)
    params = layer.parameters()
    params["bias_ih_l0"][:3] = -1e3  # i = sigmoid(-1000) = 0
    x = rng.standard_normal((50, 2, 2))
    c0 = rng.standard_normal((1, 2, 3))
    _, (_, c_n) = layer(x, (None, c0))
    np.testing.assert_allclose(c_n, c0, rtol=1e-12)
    dc_n = rng.standard_normal((1, 2, 3))
    _, (_, dc0) = layer.backward(np.zeros((50, 2, 3)), (None, dc_n))
    np.testing.assert_allclose(dc0, dc_n, rtol=1e-10)


def test_forget_bias_sets_the_forget_rows(rng):
    layer = cr.LSTM(3, 4, num_layers=2, bidirectional=True, forget_bias=1.0, device="cpu",
                    seed=int(rng.integers(1000)))
    plain = cr.LSTM(3, 4, num_layers=2, bidirectional=True, device="cpu", seed=0)
    for name, p in layer.parameters().items():
        if name.startswith("bias_ih"):
            np.testing.assert_array_equal(p[4:8], 1.0)
            assert not np.any(p[:4] == 1.0)
        elif name.startswith("bias_hh"):
            np.testing.assert_array_equal(p[4:8], 0.0)
            assert np.all(np.abs(p[8:]) > 0)
    assert set(layer.parameters()) == set(plain.parameters())
    cell = cr.LSTMCell(3, 4, forget_bias=-2.0, device="cpu")
    np.testing.assert_array_equal(cell.parameters()["bias_ih"][4:8], -2.0)


@pytest.mark.parametrize("kwargs,match", [
    (dict(proj_size=5), r"proj_size: expected an int, 0 or in \[1, hidden_size=5\), got 5"),
    (dict(proj_size=-1), r"proj_size: .* got -1"),
    (dict(proj_size=1.5), r"proj_size: .* got 1.5"),
    (dict(forget_bias=1.0, forget_gate=False), r"forget_bias: expected None with forget_gate=False"),
    (dict(forget_bias=1.0, bias=False), r"forget_bias: expected None with bias=False"),
    (dict(forget_bias=float("nan")), r"forget_bias: expected None or a finite float, got nan"),
])
def test_bad_options_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cr.LSTM(3, 5, device="cpu", **kwargs)


def test_lstm_options_on_other_cells_are_errors():
    with pytest.raises(ValueError, match=r"peephole: an LSTM option; .* for the gru, got True"):
        cell_spec("gru", peephole=True)


def test_projection_output_feeds_the_next_layer(rng):
    """A two-layer stack with projections equals two one-layer stacks, the second reading
    the first's P-wide output."""
    stack = cr.LSTM(3, 5, num_layers=2, proj_size=2, dtype="float64", device="cpu", seed=4)
    first = cr.LSTM(3, 5, proj_size=2, dtype="float64", device="cpu")
    second = cr.LSTM(2, 5, proj_size=2, dtype="float64", device="cpu")
    params = stack.parameters()
    first.load_state_dict({k: v for k, v in params.items() if k.endswith("_l0")})
    second.load_state_dict({k.replace("_l1", "_l0"): v for k, v in params.items()
                            if k.endswith("_l1")})
    x = rng.standard_normal((6, 2, 3))
    y, _ = stack(x)
    y1, _ = first(x)
    y2, _ = second(y1)
    assert rel_err(y, y2) < 1e-14
