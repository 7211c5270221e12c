"""Input dtypes on the public API: floating point of any precision is cast to the layer's
dtype; anything else, and state_dict values that are not finite floats, are ValueErrors that
name the argument (or key) and the dtype."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn.model import SequenceModel

T, B, I, H = 5, 3, 4, 6

NON_FLOATING = {
    "int64": lambda a: a.astype(np.int64),
    "uint8": lambda a: (np.abs(a) * 10).astype(np.uint8),
    "bool": lambda a: a > 0,
    "complex128": lambda a: a + 1j * a,
    "str": lambda a: a.astype(str),
    "object": lambda a: a.astype(object),
}


def _x(rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((T, B, I))


@pytest.mark.parametrize("kind", NON_FLOATING)
@pytest.mark.parametrize("layer_class", [cr.LSTM, cr.GRU, cr.RNN])
def test_layer_refuses_non_floating_x(rng, layer_class, kind):
    layer = layer_class(I, H, device="cpu", seed=0)
    x = NON_FLOATING[kind](_x(rng))
    with pytest.raises(ValueError, match=rf"^x: expected a floating-point array, got dtype "
                                         rf"{np.dtype(x.dtype)}$"):
        layer(x)


def test_nested_lists_of_ints_and_strings_are_refused():
    layer = cr.GRU(I, H, device="cpu")
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype int"):
        layer([[[1, 2, 3, 4]] * B] * T)
    with pytest.raises(ValueError, match="x: expected a floating-point array, got dtype <U"):
        layer([[["a", "b", "c", "d"]] * B] * T)


@pytest.mark.parametrize("kind", ["int64", "bool", "complex128"])
def test_layer_refuses_non_floating_states_and_gradients(rng, kind):
    lstm = cr.LSTM(I, H, num_layers=2, device="cpu", seed=1)
    x = _x(rng)
    h0 = rng.standard_normal((2, B, H))
    bad = NON_FLOATING[kind](h0)
    with pytest.raises(ValueError, match=r"^h0: expected a floating-point array, got dtype"):
        lstm(x, (bad, None))
    with pytest.raises(ValueError, match=r"^c0: expected a floating-point array, got dtype"):
        lstm(x, (h0, bad))
    y, _ = lstm(x)
    dy = rng.standard_normal(y.shape)
    with pytest.raises(ValueError, match=r"^dy: expected a floating-point array, got dtype"):
        lstm.backward(NON_FLOATING[kind](dy))
    with pytest.raises(ValueError, match=r"^dh_n: expected a floating-point array, got dtype"):
        lstm.backward(dy, (bad, None))
    with pytest.raises(ValueError, match=r"^dc_n: expected a floating-point array, got dtype"):
        lstm.backward(dy, (None, bad))
    gru = cr.GRU(I, H, num_layers=2, device="cpu", seed=1)
    gru(x)
    with pytest.raises(ValueError, match=r"^dh_n: expected a floating-point array, got dtype"):
        gru.backward(dy, bad)


def test_cells_refuse_non_floating_inputs(rng):
    cell = cr.LSTMCell(I, H, device="cpu", seed=2)
    x = rng.standard_normal((B, I))
    h = rng.standard_normal((B, H))
    with pytest.raises(ValueError, match="^x: expected a floating-point array, got dtype int64"):
        cell(x.astype(np.int64))
    with pytest.raises(ValueError, match="^c: expected a floating-point array, got dtype bool"):
        cell(x, (h, h > 0))
    cell(x, (h, h))
    with pytest.raises(ValueError, match="^dh: expected a floating-point array, got dtype int"):
        cell.backward(h.astype(np.int32))
    rnn_cell = cr.RNNCell(I, H, device="cpu")
    with pytest.raises(ValueError, match="^h: expected a floating-point array, got dtype compl"):
        rnn_cell(x, h + 1j)


def test_torch_tensors_of_integer_dtype_are_refused(rng):
    torch = pytest.importorskip("torch")
    layer = cr.LSTM(I, H, device="cpu")
    with pytest.raises(ValueError,
                       match="^x: expected a floating-point array, got dtype torch.int32$"):
        layer(torch.ones((T, B, I), dtype=torch.int32))
    y, _ = layer(torch.from_numpy(_x(rng)))  # float64 tensor: cast like a float64 array
    assert y.dtype == np.float32


@pytest.mark.parametrize("layer_dtype,input_dtype", [("float32", np.float64),
                                                     ("float64", np.float32),
                                                     ("float32", np.float16)])
def test_other_float_precisions_are_cast_to_the_layer_dtype(rng, layer_dtype, input_dtype):
    lstm = cr.LSTM(I, H, num_layers=2, bidirectional=True, dtype=layer_dtype, device="cpu",
                   seed=3)
    x = _x(rng).astype(input_dtype)
    h0 = rng.standard_normal((4, B, H)).astype(input_dtype)
    y, (h_n, c_n) = lstm(x, (h0, None))
    y_ref, (h_ref, c_ref) = lstm(x.astype(layer_dtype), (h0.astype(layer_dtype), None))
    assert y.dtype == h_n.dtype == c_n.dtype == np.dtype(layer_dtype)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(h_n, h_ref)
    dy = rng.standard_normal(y.shape).astype(input_dtype)
    dx, (dh0, dc0) = lstm.backward(dy, (h_n.astype(input_dtype), None))
    assert dx.dtype == dh0.dtype == dc0.dtype == np.dtype(layer_dtype)


def test_sequence_model_refuses_non_floating_dense_inputs_and_gradients(rng):
    model = SequenceModel("gru", I, H, 2, device="cpu", seed=4)
    x = _x(rng)
    with pytest.raises(ValueError, match="^inputs: expected a floating-point array, got dtype int"):
        model(x.astype(np.int64))
    out, _ = model(x.astype(np.float64))
    assert out.dtype == np.float32
    with pytest.raises(ValueError, match="^dy: expected a floating-point array, got dtype bool"):
        model.backward(rng.standard_normal(out.shape) > 0)


@pytest.mark.parametrize("kind", ["int64", "bool", "complex128", "str"])
def test_load_state_dict_refuses_non_floating_values(kind):
    lstm = cr.LSTM(I, H, num_layers=2, device="cpu", seed=5)
    before = lstm.state_dict()
    sd = cr.LSTM(I, H, num_layers=2, device="cpu", seed=6).state_dict()
    sd["weight_ih_l1"] = NON_FLOATING[kind](sd["weight_ih_l1"])
    with pytest.raises(ValueError, match=r"^state_dict\['weight_ih_l1'\]: expected a "
                                         r"floating-point array, got dtype"):
        lstm.load_state_dict(sd)
    for name, value in lstm.state_dict().items():  # nothing was changed
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("poison", ["one-nan", "all-nan", "inf", "-inf"])
@pytest.mark.parametrize("owner", ["layer", "cell", "model"])
def test_load_state_dict_refuses_non_finite_values(rng, poison, owner):
    module = {"layer": lambda: cr.GRU(I, H, device="cpu", seed=7),
              "cell": lambda: cr.LSTMCell(I, H, device="cpu", seed=7),
              "model": lambda: SequenceModel("lstm", I, H, 2, device="cpu", seed=7)}[owner]()
    before = module.state_dict()
    sd = {k: rng.standard_normal(v.shape) for k, v in before.items()}
    key = sorted(sd)[-1]
    target = sd[key].reshape(-1)
    if poison == "one-nan":
        target[rng.integers(target.size)] = np.nan
    else:
        target[:] = {"all-nan": np.nan, "inf": np.inf, "-inf": -np.inf}[poison]
    count = 1 if poison == "one-nan" else target.size
    with pytest.raises(ValueError, match=rf"^state_dict\['{key}'\]: expected finite values, "
                                         rf"got {count} NaN or inf of {target.size}$"):
        module.load_state_dict(sd)
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_load_state_dict_casts_other_float_precisions(rng):
    lstm = cr.LSTM(I, H, device="cpu", dtype="float32")
    sd = {k: rng.standard_normal(v.shape) for k, v in lstm.state_dict().items()}
    lstm.load_state_dict(sd)  # float64 values into a float32 layer, like torch
    for name, value in lstm.state_dict().items():
        assert value.dtype == np.float32
        np.testing.assert_array_equal(value, sd[name].astype(np.float32))
