"""Behaviour of the layers beyond the math: accumulation, state_dict, layouts, lengths, dropout."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from helpers import random_state, rel_err

LAYERS = {"lstm": cr.LSTM, "gru": cr.GRU, "rnn": cr.RNN}


def _make(cell, **kw):
    kw.setdefault("dtype", "float64")
    kw.setdefault("seed", 11)
    return LAYERS[cell](4, 5, **kw)


def _state_list(s):
    return list(s) if isinstance(s, tuple) else [s]


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_grads_accumulate_until_zero_grad(rng, cell):
    layer = _make(cell, num_layers=2)
    x, dy = rng.standard_normal((6, 3, 4)), rng.standard_normal((6, 3, 5))
    layer(x)
    layer.backward(dy)
    once = {k: g.copy() for k, g in layer.grads.items()}
    assert all(np.abs(g).sum() > 0 for g in once.values())
    layer.backward(dy)
    for k, g in layer.grads.items():
        np.testing.assert_allclose(g, 2 * once[k], rtol=1e-12)
    layer.zero_grad()
    assert all(not g.any() for g in layer.grads.values())


def test_state_dict_is_a_copy_and_parameters_are_live(rng):
    layer = _make("lstm")
    sd = layer.state_dict()
    sd["weight_hh_l0"] += 1.0
    assert not np.allclose(layer.parameters()["weight_hh_l0"], sd["weight_hh_l0"])
    params = layer.parameters()
    x = rng.standard_normal((3, 2, 4))
    y0, _ = layer(x)
    params["weight_hh_l0"] *= 0.5
    y1, _ = layer(x)
    assert rel_err(y1, y0) > 1e-3


def test_load_state_dict_round_trip(rng):
    a, b = _make("gru", num_layers=2, bidirectional=True, seed=1), _make(
        "gru", num_layers=2, bidirectional=True, seed=2
    )
    x = rng.standard_normal((5, 3, 4))
    assert rel_err(a(x)[0], b(x)[0]) > 1e-3
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_names_and_shapes_follow_torch():
    layer = cr.LSTM(4, 5, num_layers=2, bidirectional=True)
    shapes = {k: v.shape for k, v in layer.state_dict().items()}
    assert list(shapes)[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    assert shapes["weight_ih_l0"] == (20, 4)
    assert shapes["weight_ih_l1_reverse"] == (20, 10)
    assert shapes["weight_hh_l1"] == (20, 5)
    assert "bias_ih_l0" not in cr.GRU(4, 5, bias=False).state_dict()


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_batch_first_is_a_transpose(rng, cell):
    tm = _make(cell, num_layers=2, bidirectional=True)
    bf = _make(cell, num_layers=2, bidirectional=True, batch_first=True)
    bf.load_state_dict(tm.state_dict())
    x = rng.standard_normal((6, 3, 4))
    y_tm, s_tm = tm(x)
    y_bf, s_bf = bf(x.transpose(1, 0, 2))
    np.testing.assert_allclose(y_bf, y_tm.transpose(1, 0, 2), rtol=1e-12)
    for a, b in zip(_state_list(s_tm), _state_list(s_bf)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    dy = rng.standard_normal(y_tm.shape)
    dx_tm, _ = tm.backward(dy)
    dx_bf, _ = bf.backward(dy.transpose(1, 0, 2))
    np.testing.assert_allclose(dx_bf, dx_tm.transpose(1, 0, 2), rtol=1e-12)


@pytest.mark.parametrize("cell", sorted(LAYERS))
def test_unbatched_input_equals_batch_of_one(rng, cell):
    layer = _make(cell, num_layers=2)
    x = rng.standard_normal((5, 4))
    y1, s1 = layer(x)
    y3, s3 = layer(x[:, None, :])
    assert y1.shape == (5, 5)
    np.testing.assert_allclose(y1, y3[:, 0], rtol=1e-12)
    for a, b in zip(_state_list(s1), _state_list(s3)):
        assert a.shape == (2, 5)
        np.testing.assert_allclose(a, b[:, 0], rtol=1e-12)


@pytest.mark.parametrize("cell", sorted(LAYERS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_equal_running_each_sequence_alone(rng, cell, bidirectional):
    layer = _make(cell, num_layers=2, bidirectional=bidirectional)
    T, B = 6, 3
    lengths = np.array([6, 2, 4])
    x = rng.standard_normal((T, B, 4))
    s0 = random_state(rng, cell, (layer.num_layers * layer.num_directions, B, 5))
    y, s = layer(x, s0, lengths=lengths)
    for b, n in enumerate(lengths):
        sb = tuple(a[:, b : b + 1] for a in _state_list(s0))
        yb, fb = layer(x[:n, b : b + 1], sb if cell == "lstm" else sb[0])
        np.testing.assert_allclose(y[:n, b], yb[:, 0], rtol=1e-12, atol=1e-14)
        assert not y[n:, b].any()
        for a, f in zip(_state_list(s), _state_list(fb)):
            np.testing.assert_allclose(a[:, b], f[:, 0], rtol=1e-12, atol=1e-14)


def test_lengths_gradient_ignores_padding(rng):
    layer = _make("lstm", bidirectional=True)
    lengths = np.array([3, 5])
    x = rng.standard_normal((5, 2, 4))
    layer(x, lengths=lengths)
    dy = rng.standard_normal((5, 2, 10))
    dx, _ = layer.backward(dy)
    assert not dx[3:, 0].any()
    g_before = {k: g.copy() for k, g in layer.grads.items()}
    layer.zero_grad()
    dy2 = dy.copy()
    dy2[3:, 0] = rng.standard_normal((2, 10))  # gradient on padded outputs must not matter
    layer(x, lengths=lengths)
    dx2, _ = layer.backward(dy2)
    np.testing.assert_array_equal(dx2, dx)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, g_before[k])


def test_missing_state_means_zeros(rng):
    layer = _make("lstm", num_layers=2)
    x = rng.standard_normal((4, 3, 4))
    zeros = np.zeros((2, 3, 5))
    np.testing.assert_array_equal(layer(x)[0], layer(x, (zeros, zeros))[0])
    np.testing.assert_array_equal(layer(x)[0], layer(x, (None, zeros))[0])


def test_dropout_only_in_training(rng):
    layer = _make("gru", num_layers=3, dropout=0.5)
    plain = _make("gru", num_layers=3)
    plain.load_state_dict(layer.state_dict())
    x = rng.standard_normal((5, 4, 4))
    y_train, _ = layer(x)
    assert rel_err(y_train, plain(x)[0]) > 1e-3
    layer.eval()
    np.testing.assert_array_equal(layer(x)[0], plain(x)[0])


def test_dropout_masks_follow_the_seed(rng):
    x = rng.standard_normal((5, 4, 4))
    a, b = _make("rnn", num_layers=2, dropout=0.3, seed=5), _make("rnn", num_layers=2, dropout=0.3, seed=5)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])


def test_seed_fixes_weights_and_float32_tracks_float64(rng):
    a = _make("lstm", num_layers=2, seed=3)
    b = _make("lstm", num_layers=2, seed=3, dtype="float32")
    for k, v in a.state_dict().items():
        np.testing.assert_allclose(b.state_dict()[k], v, rtol=1e-6)
    x = rng.standard_normal((20, 3, 4))
    y64, _ = a(x)
    y32, _ = b(x.astype(np.float32))
    assert y32.dtype == np.float32
    assert rel_err(y32, y64) < 1e-5
    dy = rng.standard_normal(y64.shape)
    dx64, _ = a.backward(dy)
    dx32, _ = b.backward(dy.astype(np.float32))
    assert rel_err(dx32, dx64) < 1e-5
    for k in a.grads:
        assert rel_err(b.grads[k], a.grads[k]) < 1e-5, k


def test_float64_input_is_cast_to_the_layer_dtype(rng):
    layer = cr.GRU(3, 4, dtype="float32")
    y, h = layer(rng.standard_normal((4, 2, 3)))
    assert y.dtype == np.float32 and h.dtype == np.float32


def test_output_does_not_alias_saved_state(rng):
    layer = _make("rnn")
    x, dy = rng.standard_normal((4, 2, 4)), rng.standard_normal((4, 2, 5))
    y, _ = layer(x)
    layer.backward(dy)
    expected = {k: g.copy() for k, g in layer.grads.items()}
    layer.zero_grad()
    y, _ = layer(x)
    y[...] = 1e3  # the caller owns y; overwriting it must not change the gradients
    layer.backward(dy)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, expected[k])


def test_repr_names_the_configuration():
    text = repr(cr.RNN(3, 4, nonlinearity="relu", num_layers=2))
    assert text.startswith("RNN(3, 4, num_layers=2") and "nonlinearity='relu'" in text
