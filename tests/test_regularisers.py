"""Zoneout, recurrent dropout and weight dropout on the NumPy path: finite differences with
the masks held, eval mode against the formulas, the masks' statistics and sharing, errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn import regularisers

REGULARISERS = {
    "zoneout": dict(zoneout=0.3),
    "zoneout_cell": dict(zoneout_cell=0.4),
    "recurrent": dict(recurrent_dropout=0.25),
    "weight": dict(weight_dropout=0.3),
}
CLASSES = {"lstm": cr.LSTM, "gru": cr.GRU, "rnn": cr.RNN}
# (cell, regularisers by name): each alone, all together, and the LSTM with its variants.
CASES = [(cell, (name,)) for cell in CLASSES for name in REGULARISERS
         if cell == "lstm" or name != "zoneout_cell"]
CASES += [("lstm", tuple(REGULARISERS)), ("gru", ("zoneout", "recurrent", "weight")),
          ("rnn", ("zoneout", "recurrent", "weight"))]


def _options(names: tuple[str, ...]) -> dict:
    return {k: v for n in names for k, v in REGULARISERS[n].items()}


def _states(rng, layer, batch):
    LD = layer.num_layers * layer.num_directions
    sizes = layer.spec.state_sizes(layer.hidden_size)
    parts = tuple(rng.standard_normal((LD, batch, n)) for n in sizes)
    return parts if len(parts) > 1 else parts[0]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True)],
                         ids=["1layer", "2layers-bidirectional"])
@pytest.mark.parametrize("cell, names", CASES, ids=lambda v: v if isinstance(v, str)
                         else "-".join(v))
def test_training_mode_gradcheck_with_masks_held(rng, cell, names, config, with_lengths):
    layer = CLASSES[cell](3, 4, dtype="float64", device="cpu", seed=int(rng.integers(1000)),
                          **config, **_options(names))
    T, B = 5, 3
    x = rng.standard_normal((T, B, 3))
    lengths = np.array([5, 2, 4]) if with_lengths else None
    result = cr.gradcheck(layer, x, _states(rng, layer, B), lengths)
    assert set(result.errors) >= {"x", *layer.parameters()}
    assert result.max_error < 1e-6, result.errors


@pytest.mark.parametrize("variant", [dict(peephole=True), dict(proj_size=2),
                                     dict(forget_gate=False, peephole=True)],
                         ids=["peephole", "proj", "carousel-peephole"])
def test_lstm_variants_with_every_regulariser_gradcheck(rng, variant):
    layer = cr.LSTM(3, 4, num_layers=2, dtype="float64", device="cpu", seed=5, **variant,
                    **_options(tuple(REGULARISERS)))
    x = rng.standard_normal((6, 2, 3))
    result = cr.gradcheck(layer, x, _states(rng, layer, 2), np.array([6, 3]))
    assert result.max_error < 1e-6, result.errors


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_eval_mode_zoneout_is_its_expectation(rng, cell):
    """h_t = p h_{t-1} + (1 - p) h'_t (c likewise with zoneout_cell), against a plain layer
    stepped one step at a time and mixed by hand."""
    p, q = 0.3, 0.6
    options = dict(zoneout=p) | (dict(zoneout_cell=q) if cell == "lstm" else {})
    layer = CLASSES[cell](3, 5, dtype="float64", device="cpu", seed=3, **options).eval()
    plain = CLASSES[cell](3, 5, dtype="float64", device="cpu").eval()
    plain.load_state_dict(layer.state_dict())
    x = rng.standard_normal((6, 2, 3))
    state = _states(rng, layer, 2)
    y, final = layer(x, state)
    parts = list(state) if cell == "lstm" else [state]
    for t in range(6):
        _, new = plain(x[t : t + 1], tuple(parts) if cell == "lstm" else parts[0])
        new = list(new) if cell == "lstm" else [new]
        parts[0] = p * parts[0] + (1 - p) * new[0]
        if cell == "lstm":
            parts[1] = q * parts[1] + (1 - q) * new[1]
        np.testing.assert_allclose(y[t], parts[0][0], rtol=1e-12, atol=1e-14)
    for got, want in zip(final if cell == "lstm" else (final,), parts):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_eval_mode_dropouts_are_the_identity(rng, cell):
    layer = CLASSES[cell](3, 5, num_layers=2, dtype="float64", device="cpu", seed=3,
                          recurrent_dropout=0.4, weight_dropout=0.5).eval()
    plain = CLASSES[cell](3, 5, num_layers=2, dtype="float64", device="cpu")
    plain.load_state_dict(layer.state_dict())
    x = rng.standard_normal((4, 2, 3))
    np.testing.assert_array_equal(layer(x)[0], plain(x)[0])


def test_zoneout_keeps_the_previous_value_with_probability_p(rng):
    p = 0.3
    layer = cr.GRU(4, 30, dtype="float64", device="cpu", seed=1, zoneout=p)
    y, _ = layer(rng.standard_normal((60, 20, 4)))
    kept = float(np.mean(y[1:] == y[:-1]))
    assert abs(kept - p) < 0.02, kept  # 59 * 20 * 30 draws: sd 0.0025
    lstm = cr.LSTM(4, 30, dtype="float64", device="cpu", seed=1, zoneout_cell=p)
    lstm(rng.standard_normal((60, 20, 4)))
    c = lstm._saved["layers"][0][0][0][0].c
    assert abs(float(np.mean(c[2:] == c[1:-1])) - p) < 0.02


def test_recurrent_dropout_is_one_mask_for_every_step_of_a_forward(rng):
    """The layer's output equals a hand-run RNN whose h_{t-1} is scaled by the single
    (B, H) mask drawn for the forward."""
    p, T, B, H = 0.4, 7, 3, 6
    layer = cr.RNN(2, H, dtype="float64", device="cpu", seed=9, recurrent_dropout=p)
    x = rng.standard_normal((T, B, 2))
    state = copy.deepcopy(layer.rng.bit_generator.state)
    y, _ = layer(x)
    layer.rng.bit_generator.state = state
    mask = regularisers.draw(layer.spec, layer.rng, T, B, H, True).cell["recurrent_mask"]
    assert mask.shape == (B, H) and set(np.unique(mask)) <= {0.0, 1 / (1 - p)}
    w = layer.parameters()
    h = np.zeros((B, H))
    for t in range(T):
        h = np.tanh(x[t] @ w["weight_ih_l0"].T + w["bias_ih_l0"] + (h * mask) @
                    w["weight_hh_l0"].T + w["bias_hh_l0"])
        np.testing.assert_allclose(y[t], h, rtol=1e-12, atol=1e-14)
    big = regularisers.draw(layer.spec, np.random.default_rng(0), 1, 400, 50, True)
    assert abs(float(np.mean(big.cell["recurrent_mask"] == 0)) - p) < 0.02


def test_weight_dropout_masks_w_hh_elementwise_and_its_gradient(rng):
    p, T, B, H = 0.5, 5, 2, 4
    layer = cr.LSTM(3, H, dtype="float64", device="cpu", seed=4, weight_dropout=p)
    x = rng.standard_normal((T, B, 3))
    state = copy.deepcopy(layer.rng.bit_generator.state)
    y, _ = layer(x)
    dy = rng.standard_normal(y.shape)
    layer.backward(dy)
    layer.rng.bit_generator.state = state
    mask = regularisers.draw(layer.spec, layer.rng, T, B, H, True).weight
    assert mask.shape == (4 * H, H) and set(np.unique(mask)) <= {0.0, 2.0}
    dropped = cr.LSTM(3, H, dtype="float64", device="cpu")
    dropped.load_state_dict({**layer.state_dict(),
                             "weight_hh_l0": layer.parameters()["weight_hh_l0"] * mask})
    y_ref, _ = dropped(x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-14)
    dropped.backward(dy)
    np.testing.assert_allclose(layer.grads["weight_hh_l0"],
                               dropped.grads["weight_hh_l0"] * mask, rtol=1e-12, atol=1e-14)
    assert np.all(layer.grads["weight_hh_l0"][mask == 0] == 0)


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_a_new_forward_draws_new_masks_and_the_generator_state_repeats_them(rng, cell):
    options = dict(zoneout=0.3, recurrent_dropout=0.3, weight_dropout=0.3)
    layer = CLASSES[cell](3, 5, dtype="float64", device="cpu", seed=2, **options)
    x = rng.standard_normal((6, 4, 3))
    state = copy.deepcopy(layer.rng.bit_generator.state)
    first, _ = layer(x)
    second, _ = layer(x)
    assert not np.allclose(first, second)
    layer.rng.bit_generator.state = state
    np.testing.assert_array_equal(layer(x)[0], first)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, True, "0.2", None])
@pytest.mark.parametrize("name", ["zoneout", "recurrent_dropout", "weight_dropout",
                                  "zoneout_cell"])
def test_probabilities_outside_the_unit_interval_name_the_argument(name, value):
    with pytest.raises(ValueError, match=rf"{name}: expected a number in \[0, 1\), got"):
        cr.LSTM(3, 4, **{name: value})
    if name != "zoneout_cell":
        with pytest.raises(ValueError, match=rf"{name}: expected a number in \[0, 1\)"):
            cr.GRU(3, 4, **{name: value})


def test_zoneout_cell_is_an_lstm_option():
    with pytest.raises(ValueError, match="zoneout_cell: an LSTM option"):
        cr.cellspec.cell_spec("gru", zoneout_cell=0.1)
    with pytest.raises(TypeError):
        cr.RNN(3, 4, zoneout_cell=0.1)
