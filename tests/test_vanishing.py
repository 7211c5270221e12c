"""dL/dh_t norms: equal to the gradient a layer hands back when restarted at step t."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.model import SequenceModel, make_recurrent
from cuda_rnn.tasks import AddingProblem
from cuda_rnn.experiments import compare_cells, model_state_grad_norms
from cuda_rnn.vanishing import state_grad_norms


@pytest.mark.parametrize("cell, options", [
    ("lstm", {}), ("gru", {}), ("rnn-tanh", {}), ("lstm", {"forget_gate": False}),
    ("lstm", {"proj_size": 3, "peephole": True}),
], ids=["lstm", "gru", "rnn-tanh", "lstm-carousel", "lstm-proj-peephole"])
def test_norms_equal_the_layer_gradient_of_a_restart_at_each_step(
    rng: np.random.Generator, cell: str, options: dict
) -> None:
    T, B, I, H = 7, 3, 2, 4
    layer = make_recurrent(cell, I, H, 1, dtype="float64", device="cpu",
                           seed=int(rng.integers(1 << 30)), options=options)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, layer.output_size))
    norms = state_grad_norms(layer, x, dy)
    assert norms.shape == (1, T)
    assert norms[0, -1] == pytest.approx(np.linalg.norm(dy[-1]))
    for t in range(1, T):
        # Restarted from the state after step t-1, the layer hands back the part of
        # dL/dh_{t-1} that flows through later steps; the output at t-1 adds dy[t-1].
        _, state = layer(x[:t])
        layer(x[t:], state)
        _, dstate = layer.backward(dy[t:])
        dh = dstate[0] if cell == "lstm" else dstate
        assert norms[0, t - 1] == pytest.approx(np.linalg.norm(dy[t - 1] + dh[0]), rel=1e-10)


def _single(layer, k: int, cell: str = "gru", options: dict | None = None):
    """A one-layer copy of layer k of a stack."""
    one = make_recurrent(cell, layer.input_size if k == 0 else layer.output_size,
                         layer.hidden_size, 1, dtype="float64", device="cpu", options=options)
    one.load_state_dict({name.replace(f"_l{k}", "_l0"): v
                         for name, v in layer.parameters().items() if name.endswith(f"_l{k}")})
    return one


@pytest.mark.parametrize("cell, options", [("gru", None), ("lstm", {"proj_size": 2})],
                         ids=["gru", "lstm-proj"])
def test_stacked_norms_equal_those_of_each_layer_on_its_own(rng: np.random.Generator,
                                                            cell: str, options: dict) -> None:
    T, B, I, H = 6, 2, 3, 4
    stack = make_recurrent(cell, I, H, 2, dtype="float64", device="cpu",
                           seed=int(rng.integers(1 << 30)), options=options)
    x = rng.standard_normal((T, B, I))
    dy = rng.standard_normal((T, B, stack.output_size))
    norms = state_grad_norms(stack, x, dy)
    lower, upper = _single(stack, 0, cell, options), _single(stack, 1, cell, options)
    y0, _ = lower(x)
    upper(y0)
    dy0, _ = upper.backward(dy)
    assert np.allclose(norms[1], state_grad_norms(upper, y0, dy)[0], rtol=1e-12)
    assert np.allclose(norms[0], state_grad_norms(lower, x, dy0)[0], rtol=1e-12)


def test_model_norms_and_sigmoid_vanishes_fastest(rng: np.random.Generator) -> None:
    task = AddingProblem(30)
    norms = compare_cells(["rnn-sigmoid", "rnn-tanh"], task, 16, 8,
                          int(rng.integers(1 << 30)))
    ratio = {k: v[0] / v[-1] for k, v in norms.items()}
    assert set(norms) == {"rnn-sigmoid init", "rnn-tanh init"}
    assert ratio["rnn-sigmoid init"] < 1e-6 * ratio["rnn-tanh init"]
    model = SequenceModel("gru", 2, 5, 1, num_layers=3, dtype="float64", device="cpu", seed=1)
    per_layer = model_state_grad_norms(model, task, task.sample(rng, 4))
    assert per_layer.shape == (3, 30) and np.all(per_layer[:, -1] > 0)


def test_training_keeps_the_lstm_gradient_alive(rng: np.random.Generator) -> None:
    task = AddingProblem(12)
    norms = compare_cells(["lstm"], task, 8, 8, int(rng.integers(1 << 30)), train_steps=300,
                          lr=2e-2)
    init, trained = norms["lstm init"], norms["lstm trained"]
    assert trained[0] / trained[-1] > 10 * init[0] / init[-1]


def test_bidirectional_is_rejected(rng: np.random.Generator) -> None:
    from cuda_rnn.layers import LSTM

    layer = LSTM(2, 3, bidirectional=True, device="cpu")
    with pytest.raises(ValueError, match="layer: expected a unidirectional time-major stack"):
        state_grad_norms(layer, rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 6)))
