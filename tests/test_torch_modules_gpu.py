"""cuda_rnn.torch modules on a GPU: same function and gradients as torch.nn's (cuDNN), zero-copy
DLPack hand-over, and torch's current stream. Skipped where CuPy sees no GPU."""
from __future__ import annotations

import importlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cuda_rnn import torch as crt  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.hardware]

PAIRS = {"lstm": (torch.nn.LSTM, crt.LSTM), "gru": (torch.nn.GRU, crt.GRU),
         "rnn": (torch.nn.RNN, crt.RNN)}
OPTIONS = [{}, {"num_layers": 2, "bidirectional": True}, {"batch_first": True, "bias": False}]


@pytest.fixture(autouse=True)
def _no_tf32():
    """float32 comparisons at 1e-5 need cuDNN and cuBLAS without TF32 rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _pair(kind, rng, dtype, **options):
    torch.manual_seed(int(rng.integers(2**31)))
    ref = PAIRS[kind][0](5, 7, **options).to("cuda", dtype)
    ours = PAIRS[kind][1](5, 7, **options).to("cuda", dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _randn(rng, *shape, dtype):
    return torch.from_numpy(rng.standard_normal(shape)).to("cuda", dtype).requires_grad_()


def _run(kind, module, x, hx, weights):
    y, s = module(x, hx)
    outs = [y, *(s if kind == "lstm" else (s,))]
    loss = sum((o * w).sum() for o, w in zip(outs, weights))
    leaves = [x, *(hx if kind == "lstm" else (hx,))]
    return [o.detach() for o in outs], torch.autograd.grad(loss, leaves + list(module.parameters()))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)],
                         ids=["float64", "float32"])
@pytest.mark.parametrize("options", OPTIONS, ids=["default", "2layers-bidir", "bf-nobias"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_matches_torch_on_gpu(kind, options, dtype, tol, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, dtype, **options)
    T, B = 9, 3
    x = _randn(rng, *((B, T, 5) if ours.batch_first else (T, B, 5)), dtype=dtype)
    LD = ours.num_layers * (2 if ours.bidirectional else 1)
    h0 = _randn(rng, LD, B, 7, dtype=dtype)
    hx = (h0, _randn(rng, LD, B, 7, dtype=dtype)) if kind == "lstm" else h0
    shapes = [(B, T, 7 * LD // ours.num_layers) if ours.batch_first else
              (T, B, 7 * LD // ours.num_layers)] + [(LD, B, 7)] * (2 if kind == "lstm" else 1)
    weights = [torch.from_numpy(rng.standard_normal(s)).to("cuda", dtype) for s in shapes]
    outs_ref, grads_ref = _run(kind, ref, x, hx, weights)
    outs, grads = _run(kind, ours, x, hx, weights)
    for a, b in zip(outs + list(grads), outs_ref + list(grads_ref)):
        assert a.is_cuda
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_kernel_reads_tensor_memory_without_copy(rng: np.random.Generator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_lstm = importlib.import_module("cuda_rnn.cuda.lstm")
    _, ours = _pair("lstm", rng, torch.float32)
    x = _randn(rng, 6, 4, 5, dtype=torch.float32)
    seen = {}
    original = cuda_lstm.lstm_forward

    def spy(x_, h0_, c0_, w_ih, w_hh, b_ih, b_hh, *args, **kwargs):
        seen.update(x=x_.data.ptr, w_ih=w_ih.data.ptr, w_hh=w_hh.data.ptr,
                    b_ih=b_ih.data.ptr, b_hh=b_hh.data.ptr)
        return original(x_, h0_, c0_, w_ih, w_hh, b_ih, b_hh, *args, **kwargs)

    monkeypatch.setattr(cuda_lstm, "lstm_forward", spy)
    y, _ = ours(x)
    assert seen == {
        "x": x.data_ptr(), "w_ih": ours.weight_ih_l0.data_ptr(),
        "w_hh": ours.weight_hh_l0.data_ptr(), "b_ih": ours.bias_ih_l0.data_ptr(),
        "b_hh": ours.bias_hh_l0.data_ptr(),
    }
    assert y.is_cuda and y.shape == (6, 4, 7)


def test_runs_on_torch_current_stream(rng: np.random.Generator,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import cupy

    cuda_gru = importlib.import_module("cuda_rnn.cuda.gru")
    ref, ours = _pair("gru", rng, torch.float64, num_layers=2)
    x = _randn(rng, 40, 8, 5, dtype=torch.float64)
    streams = []
    original = cuda_gru.gru_forward

    def spy(*args, **kwargs):
        streams.append(cupy.cuda.get_current_stream().ptr)
        return original(*args, **kwargs)

    monkeypatch.setattr(cuda_gru, "gru_forward", spy)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y, h = ours(x)
        (y.square().sum() + h.sum()).backward()
    torch.cuda.current_stream().wait_stream(side)
    assert streams == [side.cuda_stream] * 2
    y_ref, h_ref = ref(x.detach())
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)


def test_autocast_runs_in_float16_and_grads_reach_float32_weights(
        rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng, torch.float32)
    x = _randn(rng, 7, 3, 5, dtype=torch.float32)
    expected, _ = ours(x)
    with torch.autocast("cuda", dtype=torch.float16):
        y, (h, c) = ours(x)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), expected, rtol=2e-2, atol=2e-2)
    y.float().square().sum().backward()
    assert ours.weight_hh_l0.grad.dtype == torch.float32
    assert torch.all(torch.isfinite(ours.weight_hh_l0.grad))
    assert ours.weight_hh_l0.grad.abs().sum() > 0
