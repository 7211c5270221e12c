"""cuda_rnn.interop: weights in and out of torch.nn modules, zero-copy views, optional torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cuda_rnn as cr  # noqa: E402
from cuda_rnn import interop  # noqa: E402

TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
OPTIONS = [
    {},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "batch_first": True},
    {"bias": False},
    {"num_layers": 3, "dropout": 0.25},
]


def _torch_module(kind: str, rng: np.random.Generator, **options) -> torch.nn.Module:
    torch.manual_seed(int(rng.integers(2**31)))
    return TORCH_CLASSES[kind](3, 5, **options).double()


def _state(kind: str, rng: np.random.Generator, shape: tuple[int, ...]):
    h = rng.standard_normal(shape)
    return (h, rng.standard_normal(shape)) if kind == "lstm" else h


def _as_torch(state):
    if isinstance(state, tuple):
        return tuple(torch.from_numpy(s) for s in state)
    return torch.from_numpy(state)


def _flat(state) -> list[np.ndarray]:
    return [interop.as_array(s) if hasattr(s, "detach") else s
            for s in (state if isinstance(state, tuple) else (state,))]


def test_import_cuda_rnn_does_not_import_torch() -> None:
    code = "import sys, cuda_rnn, cuda_rnn.interop; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_from_torch_computes_the_same_function(kind: str, options: dict,
                                               rng: np.random.Generator) -> None:
    module = _torch_module(kind, rng, **options).eval()
    layer = interop.from_torch(module)
    assert layer.dtype == "float64" and layer.device == "cpu" and not layer.training
    D = 2 if module.bidirectional else 1
    x = rng.standard_normal((4, 6, 3) if module.batch_first else (6, 4, 3))
    state = _state(kind, rng, (module.num_layers * D, 4, 5))
    with torch.no_grad():
        y_ref, s_ref = module(torch.from_numpy(x), _as_torch(state))
    y, s = layer(x, state)
    np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-12, atol=1e-12)
    for a, b in zip(_flat(s), _flat(s_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind,cls", [("lstm", cr.LSTM), ("gru", cr.GRU), ("rnn", cr.RNN)])
def test_to_torch_computes_the_same_function(kind: str, cls: type,
                                             rng: np.random.Generator) -> None:
    layer = cls(3, 5, num_layers=2, bidirectional=True, dtype="float64", device="cpu",
                seed=int(rng.integers(2**31))).eval()
    module = interop.to_torch(layer)
    assert isinstance(module, TORCH_CLASSES[kind]) and not module.training
    assert next(module.parameters()).dtype == torch.float64
    x = rng.standard_normal((7, 2, 3))
    state = _state(kind, rng, (4, 2, 5))
    with torch.no_grad():
        y_ref, s_ref = module(torch.from_numpy(x), _as_torch(state))
    y, s = layer(x, state)
    np.testing.assert_allclose(y_ref.numpy(), y, rtol=1e-12, atol=1e-12)
    for a, b in zip(_flat(s), _flat(s_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_round_trip_copies_weights_and_nonlinearity(rng: np.random.Generator) -> None:
    module = _torch_module("rnn", rng, num_layers=2, nonlinearity="relu")
    layer = interop.from_torch(module)
    assert layer.nonlinearity == "relu"
    back = interop.to_torch(layer)
    assert back.nonlinearity == "relu"
    for name, p in module.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name].numpy(), p.numpy())
    with torch.no_grad():
        module.weight_hh_l0.add_(1.0)
    assert not np.allclose(layer.parameters()["weight_hh_l0"], module.weight_hh_l0.detach().numpy())


def test_projection_round_trip(rng: np.random.Generator) -> None:
    module = torch.nn.LSTM(3, 5, proj_size=2, num_layers=2, bidirectional=True).double()
    layer = interop.from_torch(module)
    assert layer.spec.options.proj_size == 2
    x = rng.standard_normal((4, 3, 3))
    y, (h, c) = layer(x)
    y_ref, (h_ref, c_ref) = module(torch.from_numpy(x))
    np.testing.assert_allclose(y, y_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert h.shape == (4, 3, 2) and c.shape == (4, 3, 5)
    np.testing.assert_allclose(c, c_ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    back = interop.to_torch(layer)
    assert back.proj_size == 2
    for name, p in module.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name].numpy(), p.numpy())


@pytest.mark.parametrize("options, shown", [(dict(peephole=True), "peephole=True"),
                                            (dict(forget_gate=False), "forget_gate=False"),
                                            (dict(layer_norm=True), "layer_norm=True")])
def test_to_torch_rejects_what_torch_nn_lstm_lacks(options: dict, shown: str) -> None:
    layer = cr.LSTM(3, 5, device="cpu", **options)
    with pytest.raises(ValueError, match=shown):
        interop.to_torch(layer)


def test_from_torch_rejects_other_modules() -> None:
    with pytest.raises(ValueError, match=r"module: expected a torch.nn.RNN.*got Linear"):
        interop.from_torch(torch.nn.Linear(3, 5))


def test_to_torch_rejects_sigmoid_rnn(rng: np.random.Generator) -> None:
    layer = cr.RNN(3, 5, nonlinearity="sigmoid", device="cpu", seed=int(rng.integers(2**31)))
    with pytest.raises(ValueError, match=r"nonlinearity: expected 'tanh' or 'relu'.*'sigmoid'"):
        interop.to_torch(layer)


def test_to_torch_rejects_other_objects() -> None:
    with pytest.raises(ValueError, match=r"layer: expected a cuda_rnn RNN, LSTM or GRU, got dict"):
        interop.to_torch({})


def test_from_torch_of_float32_module_gives_float32_layer(rng: np.random.Generator) -> None:
    module = _torch_module("gru", rng).float()
    layer = interop.from_torch(module)
    assert layer.dtype == "float32"
    np.testing.assert_array_equal(layer.parameters()["weight_ih_l0"],
                                  module.weight_ih_l0.detach().numpy())


def test_as_array_and_as_tensor_share_memory(rng: np.random.Generator) -> None:
    t = torch.from_numpy(rng.standard_normal((4, 3))).requires_grad_()
    a = interop.as_array(t)
    assert a.ctypes.data == t.data_ptr()
    a[1, 2] = 42.0
    assert t[1, 2].item() == 42.0
    b = rng.standard_normal((2, 5))
    tb = interop.as_tensor(b)
    assert tb.data_ptr() == b.ctypes.data
    np.testing.assert_array_equal(tb.numpy(), b)
