"""Bad input raises ValueError naming the argument and the expected and given values."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn import backend


@pytest.fixture
def lstm():
    return cr.LSTM(4, 3, num_layers=2, dtype="float64", seed=0)


def test_wrong_rank(lstm, rng):
    with pytest.raises(ValueError, match=r"x: expected a 3-D array .* got shape \(5,\)"):
        lstm(rng.standard_normal(5))


def test_wrong_feature_size(lstm, rng):
    with pytest.raises(ValueError, match=r"x: expected input_size=4 .* got shape \(5, 2, 3\)"):
        lstm(rng.standard_normal((5, 2, 3)))


def test_state_batch_mismatch(lstm, rng):
    h0 = rng.standard_normal((2, 3, 3))
    with pytest.raises(ValueError, match=r"h0: expected shape \(2, 2, 3\), got \(2, 3, 3\)"):
        lstm(rng.standard_normal((5, 2, 4)), (h0, None))


def test_state_layer_mismatch(rng):
    gru = cr.GRU(4, 3, num_layers=2, bidirectional=True, dtype="float64")
    with pytest.raises(ValueError, match=r"h0: expected shape \(4, 2, 3\), got \(2, 2, 3\)"):
        gru(rng.standard_normal((5, 2, 4)), rng.standard_normal((2, 2, 3)))


def test_lstm_state_must_be_a_pair(lstm, rng):
    with pytest.raises(ValueError, match="state: expected a pair"):
        lstm(rng.standard_normal((5, 2, 4)), rng.standard_normal((2, 2, 3)))


@pytest.mark.parametrize(
    "lengths,match",
    [
        ([3, 2, 1], r"lengths: expected shape \(2,\)"),
        ([0, 2], r"lengths: expected integers in \[1, T=5\]"),
        ([-1, 2], r"lengths: expected integers in \[1, T=5\]"),
        ([6, 2], r"lengths: expected integers in \[1, T=5\]"),
        ([2.5, 2], "lengths: expected integers"),
    ],
)
def test_bad_lengths(lstm, rng, lengths, match):
    with pytest.raises(ValueError, match=match):
        lstm(rng.standard_normal((5, 2, 4)), lengths=np.array(lengths))


def test_state_dict_missing_key(lstm):
    sd = lstm.state_dict()
    del sd["bias_hh_l1"]
    with pytest.raises(ValueError, match=r"missing \['bias_hh_l1'\]"):
        lstm.load_state_dict(sd)


def test_state_dict_extra_key(lstm):
    sd = lstm.state_dict()
    sd["weight_ih_l2"] = sd["weight_ih_l1"]
    with pytest.raises(ValueError, match=r"unexpected \['weight_ih_l2'\]"):
        lstm.load_state_dict(sd)


def test_state_dict_wrong_shape_changes_nothing(lstm, rng):
    before = lstm.state_dict()
    sd = {k: rng.standard_normal(v.shape) for k, v in before.items()}
    sd["weight_hh_l0"] = rng.standard_normal((12, 4))
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l0'\]: expected shape \(12, 3\), got \(12, 4\)"):
        lstm.load_state_dict(sd)
    for k, v in lstm.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(dtype="float8"), "dtype: expected one of"),
        (dict(dtype="float16"), "dtype: expected one of .* on device 'cpu'"),
        (dict(device="tpu"), "device: expected one of"),
        (dict(dropout=1.0), r"dropout: expected a number in \[0, 1\)"),
        (dict(num_layers=0), "num_layers: expected a positive integer"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cr.GRU(3, 4, device=kwargs.pop("device", "cpu"), **kwargs)


def test_bad_sizes():
    with pytest.raises(ValueError, match="hidden_size: expected a positive integer, got 0"):
        cr.LSTM(3, 0)
    with pytest.raises(ValueError, match="input_size: expected a positive integer, got 2.5"):
        cr.LSTM(2.5, 3)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of \('tanh', 'relu', 'sigmoid'\), got 'gelu'"):
        cr.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="nonlinearity"):
        cr.RNNCell(3, 4, nonlinearity="gelu")


def test_backward_dy_shape(lstm, rng):
    lstm(rng.standard_normal((5, 2, 4)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(5, 2, 3\), got \(5, 2, 4\)"):
        lstm.backward(rng.standard_normal((5, 2, 4)))


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before any forward"):
        cr.GRU(2, 2).backward(None)


def test_cell_input_checks(rng):
    cell = cr.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 3\) or \(3,\), got \(2, 5\)"):
        cell(rng.standard_normal((2, 5)))
    with pytest.raises(ValueError, match=r"c: expected shape \(2, 4\), got \(3, 4\)"):
        cell(rng.standard_normal((2, 3)), (rng.standard_normal((2, 4)), rng.standard_normal((3, 4))))


def test_cuda_without_gpu_says_what_to_install(monkeypatch):
    monkeypatch.setattr(backend, "_cupy_status", lambda: (None, "CuPy is not installed"))
    with pytest.raises(RuntimeError, match=r"device='cuda' is not available: CuPy is not installed; install CuPy"):
        cr.LSTM(3, 4, device="cuda")


def test_auto_falls_back_to_cpu_quietly(monkeypatch, recwarn):
    monkeypatch.delenv("CUDA_RNN_DEVICE", raising=False)
    monkeypatch.setattr(backend, "_cupy_status", lambda: (None, "CuPy is not installed"))
    layer = cr.GRU(3, 4, device="auto")
    assert layer.device == "cpu" and layer.xp is np
    assert len(recwarn) == 0


def test_environment_variable_picks_the_device(monkeypatch):
    monkeypatch.setattr(backend, "_cupy_status", lambda: (None, "CuPy is not installed"))
    monkeypatch.setenv("CUDA_RNN_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="not available"):
        cr.GRU(3, 4)
    monkeypatch.setenv("CUDA_RNN_DEVICE", "cpu")
    assert cr.GRU(3, 4).device == "cpu"
    monkeypatch.setenv("CUDA_RNN_DEVICE", "gpu")
    with pytest.raises(ValueError, match="CUDA_RNN_DEVICE: expected one of"):
        cr.GRU(3, 4)


def test_unknown_algo():
    with pytest.raises(ValueError, match=r"algo: expected one of \('alternating', 'graph', 'persistent', 'auto'\), got 'fast'"):
        cr.LSTM(3, 4, algo="fast")
