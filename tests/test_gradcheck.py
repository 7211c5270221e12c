"""Finite differences (float64) against every layer's and cell's BPTT: relative error < 1e-6."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from helpers import random_state

LAYERS = {"lstm": cr.LSTM, "gru": cr.GRU, "rnn": cr.RNN}
CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=2),
    dict(num_layers=3),
    dict(num_layers=1, bidirectional=True),
    dict(num_layers=2, bidirectional=True, batch_first=True),
    dict(num_layers=2, bias=False),
    dict(num_layers=2, dropout=0.4),
    dict(num_layers=2, bidirectional=True, dropout=0.3, batch_first=True),
]


def _layer(cell: str, **kw):
    return LAYERS[cell](3, 4, dtype="float64", seed=7, **kw)


@pytest.mark.parametrize("cell", sorted(LAYERS))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_layer_gradcheck(rng, cell, config, with_lengths):
    layer = _layer(cell, **config)
    T, B = 5, 3
    x = rng.standard_normal((B, T, 3) if layer.batch_first else (T, B, 3))
    D = 2 if layer.bidirectional else 1
    state = random_state(rng, cell, (layer.num_layers * D, B, 4))
    lengths = np.array([5, 2, 4]) if with_lengths else None
    result = cr.gradcheck(layer, x, state, lengths)
    assert set(result.errors) >= {"x", "h0", *layer.parameters()}
    assert result.max_error < 1e-6, result.errors


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu", "sigmoid"])
def test_rnn_nonlinearities_gradcheck(rng, nonlinearity):
    layer = cr.RNN(3, 5, num_layers=2, nonlinearity=nonlinearity, dtype="float64", seed=3)
    x = rng.standard_normal((6, 2, 3))
    result = cr.gradcheck(layer, x, rng.standard_normal((2, 2, 5)))
    assert result.max_error < 1e-6, result.errors


@pytest.mark.parametrize("cls,cell", [(cr.LSTMCell, "lstm"), (cr.GRUCell, "gru"), (cr.RNNCell, "rnn")])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_gradcheck(rng, cls, cell, bias):
    module = cls(3, 5, bias=bias, dtype="float64", seed=1)
    x = rng.standard_normal((4, 3))
    result = cr.gradcheck(module, x, random_state(rng, cell, (4, 5)))
    assert result.max_error < 1e-6, result.errors


def test_gradcheck_detects_a_wrong_gradient(rng, monkeypatch):
    """The check can fail: a backward that drops dh0 is caught."""
    layer = cr.GRU(3, 4, dtype="float64", seed=0)
    original = layer.backend.backward

    def broken(spec, dy, dstates, cache, **kwargs):
        run = original(spec, dy, dstates, cache, **kwargs)
        return run._replace(states=(run.states[0] * 0.5,))

    monkeypatch.setattr(layer.backend, "backward", broken)
    result = cr.gradcheck(layer, rng.standard_normal((4, 2, 3)), rng.standard_normal((1, 2, 4)))
    assert result.errors["h0"] > 0.1
    assert not result.passed()


def test_gradcheck_leaves_accumulated_grads_alone(rng):
    layer = cr.LSTM(2, 3, dtype="float64", seed=0)
    layer(rng.standard_normal((3, 2, 2)))
    layer.backward(rng.standard_normal((3, 2, 3)))
    before = {k: g.copy() for k, g in layer.grads.items()}
    cr.gradcheck(layer, rng.standard_normal((3, 2, 2)), max_elements=5)
    for k, g in layer.grads.items():
        np.testing.assert_array_equal(g, before[k])


def test_gradcheck_needs_float64():
    with pytest.raises(ValueError, match="float64"):
        cr.gradcheck(cr.GRU(2, 2, dtype="float32"), np.ones((2, 1, 2)))
