"""Linear, one-hot and embedding encoders, and the SequenceModel: values and gradients."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.losses import sequence_loss
from cuda_rnn.model import CELLS, Embedding, Linear, OneHot, SequenceModel, make_recurrent


def test_linear_forward_and_backward_hand_computed(rng: np.random.Generator) -> None:
    lin = Linear(3, 2, device="cpu", dtype="float64", seed=1)
    w, b = lin.parameters()["weight"], lin.parameters()["bias"]
    x = rng.standard_normal((4, 5, 3))
    y = lin.forward(x)
    assert np.allclose(y, np.einsum("tbi,oi->tbo", x, w) + b)
    dy = rng.standard_normal((4, 5, 2))
    dx = lin.backward(dy)
    assert np.allclose(dx, np.einsum("tbo,oi->tbi", dy, w))
    assert np.allclose(lin.grads["weight"], np.einsum("tbo,tbi->oi", dy, x))
    assert np.allclose(lin.grads["bias"], dy.sum(axis=(0, 1)))
    lin.backward(dy)
    assert np.allclose(lin.grads["bias"], 2 * dy.sum(axis=(0, 1)))  # accumulates
    lin.zero_grad()
    assert not lin.grads["bias"].any()


def test_linear_init_bound_and_errors() -> None:
    lin = Linear(16, 4, device="cpu", seed=3)
    assert np.abs(lin.parameters()["weight"]).max() <= 0.25
    with pytest.raises(ValueError, match=r"x: expected in_features=16 in the last dimension, "
                                         r"got shape \(2, 3\)"):
        lin.forward(np.ones((2, 3), np.float32))


def test_embedding_lookup_and_gradient_accumulates_repeats(rng: np.random.Generator) -> None:
    emb = Embedding(5, 3, dtype="float64", device="cpu", seed=2)
    tokens = np.array([[1, 4], [1, 0]])
    out = emb.forward(tokens)
    assert np.array_equal(out, emb.parameters()["weight"][tokens])
    dy = rng.standard_normal((2, 2, 3))
    emb.backward(dy)
    g = emb.grads["weight"]
    assert np.allclose(g[1], dy[0, 0] + dy[1, 0])
    assert np.allclose(g[4], dy[0, 1]) and np.allclose(g[0], dy[1, 1])
    assert not g[[2, 3]].any()


def test_onehot_and_token_errors() -> None:
    enc = OneHot(4, "float32", np)
    out = enc.forward(np.array([[3, 0]]))
    assert out.shape == (1, 2, 4) and out[0, 0, 3] == 1 and out.sum() == 2
    with pytest.raises(ValueError, match=r"tokens: expected ids in \[0, 4\), got min 0 and max 4"):
        enc.forward(np.array([0, 4]))
    with pytest.raises(ValueError, match="tokens: expected an integer dtype, got float64"):
        enc.forward(np.array([0.0]))


def _loss_of(model: SequenceModel, inputs, targets, kind: str) -> float:
    out, _ = model.forward(inputs)
    return sequence_loss(kind, out, targets)[0]


@pytest.mark.parametrize("cell, kind", [("lstm", "embedding"), ("gru", "onehot"),
                                        ("rnn-sigmoid", "dense")])
def test_sequence_model_gradients_match_finite_differences(
    rng: np.random.Generator, cell: str, kind: str
) -> None:
    vocab, T, B = 5, 4, 3
    model = SequenceModel(cell, vocab, 4, 3, num_layers=2, input_kind=kind, embed_dim=3
                          if kind == "embedding" else None, dtype="float64", device="cpu",
                          seed=int(rng.integers(1 << 30)))
    inputs = (rng.standard_normal((T, B, vocab)) if kind == "dense"
              else rng.integers(0, vocab, (T, B)))
    targets = rng.integers(0, 3, (T, B))
    out, _ = model.forward(inputs)
    _, dout = sequence_loss("xent", out, targets)
    model.zero_grad()
    model.backward(dout)
    grads = {k: g.copy() for k, g in model.grads.items()}
    expected = {"rnn.weight_ih_l0", "rnn.weight_hh_l1", "head.weight", "head.bias"}
    assert expected <= set(grads)
    assert ("embed.weight" in grads) == (kind == "embedding")
    eps = 1e-6
    for name, p in model.parameters().items():
        flat = p.reshape(-1)
        for i in rng.choice(flat.size, size=min(4, flat.size), replace=False):
            orig = flat[i]
            flat[i] = orig + eps
            up = _loss_of(model, inputs, targets, "xent")
            flat[i] = orig - eps
            down = _loss_of(model, inputs, targets, "xent")
            flat[i] = orig
            assert grads[name].reshape(-1)[i] == pytest.approx((up - down) / (2 * eps),
                                                               rel=1e-5, abs=1e-8), name


def test_sequence_model_state_dict_round_trip_and_checks(rng: np.random.Generator) -> None:
    a = SequenceModel("lstm", 2, 5, 1, device="cpu", seed=1)
    b = SequenceModel("lstm", 2, 5, 1, device="cpu", seed=2)
    x = rng.standard_normal((6, 3, 2)).astype(np.float32)
    assert not np.allclose(a.forward(x)[0], b.forward(x)[0])
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.forward(x)[0], b.forward(x)[0])
    bad = a.state_dict()
    bad.pop("head.bias")
    with pytest.raises(ValueError, match=r"missing \['head.bias'\]"):
        b.load_state_dict(bad)


def test_sequence_model_carries_state_across_calls(rng: np.random.Generator) -> None:
    model = SequenceModel("gru", 3, 4, 2, device="cpu", dtype="float64", seed=5)
    x = rng.standard_normal((8, 2, 3))
    whole, _ = model.forward(x)
    first, state = model.forward(x[:5])
    second, _ = model.forward(x[5:], state)
    assert np.allclose(np.concatenate([first, second]), whole, atol=1e-12)


def test_same_seed_gives_same_model_and_bad_arguments_are_named() -> None:
    a = SequenceModel("rnn-tanh", 2, 3, 1, device="cpu", seed=9).state_dict()
    b = SequenceModel("rnn-tanh", 2, 3, 1, device="cpu", seed=9).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="cell: expected one of"):
        SequenceModel("transformer", 2, 3, 1, device="cpu")
    with pytest.raises(ValueError, match="input_kind: expected one of"):
        SequenceModel("lstm", 2, 3, 1, input_kind="image", device="cpu")
    with pytest.raises(ValueError, match="embed_dim: expected None for input_kind='dense'"):
        SequenceModel("lstm", 2, 3, 1, embed_dim=4, device="cpu")


@pytest.mark.parametrize("cell", CELLS)
def test_make_recurrent_builds_each_cell(cell: str) -> None:
    layer = make_recurrent(cell, 3, 4, device="cpu")
    assert type(layer).__name__ == cell.split("-")[0].upper()
    if cell.startswith("rnn-"):
        assert layer.nonlinearity == cell.split("-")[1]
