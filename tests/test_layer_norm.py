"""The layer-normalised LSTM (DESIGN.md: LN over the G*H pre-activations of each product and
over the H units of c) on the NumPy path: the step's equations, finite differences alone and
with every other option, the parameters' names, shapes and initial values."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr


def _randomise_norms(layer, rng) -> None:
    """Move the gains and the cell bias off their initial 1 and 0, so that a wrong use of
    either shows."""
    for name, p in layer.parameters().items():
        if name.startswith("ln_weight"):
            p[...] = rng.uniform(0.5, 1.5, p.shape)
        elif name.startswith("ln_bias"):
            p[...] = rng.standard_normal(p.shape) * 0.5


def _ln(z):
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-5)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_a_step_follows_the_equations(rng):
    I, H, B = 3, 5, 4
    cell = cr.LSTMCell(I, H, layer_norm=True, dtype="float64", device="cpu", seed=1)
    _randomise_norms(cell, rng)
    p = cell.parameters()
    x, h0, c0 = (rng.standard_normal((B, n)) for n in (I, H, H))
    h, c = cell(x, (h0, c0))
    a = (_ln(x @ p["weight_ih"].T) * p["ln_weight_ih"] + _ln(h0 @ p["weight_hh"].T)
         * p["ln_weight_hh"] + p["bias_ih"] + p["bias_hh"])
    i, f, g, o = (a[:, k * H : (k + 1) * H] for k in range(4))
    c_want = _sigmoid(f) * c0 + _sigmoid(i) * np.tanh(g)
    h_want = _sigmoid(o) * np.tanh(_ln(c_want) * p["ln_weight_c"] + p["ln_bias_c"])
    np.testing.assert_allclose(c, c_want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, h_want, rtol=1e-12, atol=1e-14)


def test_parameters_and_their_initial_values():
    layer = cr.LSTM(3, 5, num_layers=2, bidirectional=True, layer_norm=True,
                    forget_gate=False)
    shapes = {k: v.shape for k, v in layer.parameters().items() if k.startswith("ln_")}
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        assert shapes[f"ln_weight_ih{suffix}"] == shapes[f"ln_weight_hh{suffix}"] == (15,)
        assert shapes[f"ln_weight_c{suffix}"] == shapes[f"ln_bias_c{suffix}"] == (5,)
        params = layer.parameters()
        for name in ("ln_weight_ih", "ln_weight_hh", "ln_weight_c"):
            assert np.all(params[name + suffix] == 1)
        assert np.all(params["ln_bias_c" + suffix] == 0)
    assert "layer_norm=True" in repr(layer)


@pytest.mark.parametrize("options", [
    dict(), dict(peephole=True), dict(proj_size=2), dict(forget_gate=False, peephole=True),
    dict(zoneout=0.2, zoneout_cell=0.3, recurrent_dropout=0.25, weight_dropout=0.3),
], ids=["alone", "peephole", "proj", "carousel-peephole", "regularisers"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_layer_gradcheck(rng, options, with_lengths):
    layer = cr.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True,
                    layer_norm=True, dtype="float64", device="cpu", seed=3, **options)
    _randomise_norms(layer, rng)
    x = rng.standard_normal((3, 5, 3))
    result = cr.gradcheck(layer, x, None, np.array([5, 2, 4]) if with_lengths else None)
    assert {n for n in result.errors if n.startswith("ln_")} == {
        n for n in layer.parameters() if n.startswith("ln_")}
    assert result.max_error < 1e-6, result.errors


def test_cell_gradcheck(rng):
    cell = cr.LSTMCell(3, 4, layer_norm=True, peephole=True, dtype="float64", device="cpu")
    _randomise_norms(cell, rng)
    result = cr.gradcheck(cell, rng.standard_normal((2, 3)),
                          (rng.standard_normal((2, 4)), rng.standard_normal((2, 4))))
    assert result.max_error < 1e-6, result.errors


def test_layer_norm_is_an_lstm_option():
    with pytest.raises(ValueError, match="layer_norm: an LSTM option"):
        cr.cellspec.cell_spec("gru", layer_norm=True)
