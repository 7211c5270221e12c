"""cuda_rnn.torch.LSTM / GRU / RNN on the CPU: same function and gradients as torch.nn's."""
from __future__ import annotations

import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import cuda_rnn.reference.lstm as reference_lstm  # noqa: E402
from cuda_rnn import torch as crt  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

PAIRS = {
    "lstm": (torch.nn.LSTM, crt.LSTM),
    "gru": (torch.nn.GRU, crt.GRU),
    "rnn": (torch.nn.RNN, crt.RNN),
}
OPTIONS = [
    {},
    {"num_layers": 2},
    {"bidirectional": True},
    {"num_layers": 2, "bidirectional": True},
    {"batch_first": True, "num_layers": 2},
    {"bias": False},
    {"num_layers": 3, "dropout": 0.3},  # compared in eval mode: no dropout on either side
]
OPTION_IDS = ["-".join(f"{k}={v}" for k, v in o.items()) or "default" for o in OPTIONS]


def _pair(kind: str, rng: np.random.Generator, dtype: torch.dtype = torch.float64, **options):
    """A torch.nn module and its cuda_rnn.torch twin holding the same weights."""
    torch_cls, ours_cls = PAIRS[kind]
    torch.manual_seed(int(rng.integers(2**31)))
    ref = torch_cls(3, 5, **options).to(dtype)
    ours = ours_cls(3, 5, **options).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _randn(rng: np.random.Generator, *shape: int, dtype: torch.dtype = torch.float64):
    return torch.from_numpy(rng.standard_normal(shape)).to(dtype).requires_grad_()


def _inputs(kind: str, module: torch.nn.Module, rng: np.random.Generator, T: int = 6,
            B: int = 4, dtype: torch.dtype = torch.float64):
    x = _randn(rng, *((B, T, 3) if module.batch_first else (T, B, 3)), dtype=dtype)
    LD, H = module.num_layers * (2 if module.bidirectional else 1), module.hidden_size
    h0 = _randn(rng, LD, B, getattr(module, "proj_size", 0) or H, dtype=dtype)
    hx = (h0, _randn(rng, LD, B, H, dtype=dtype)) if kind == "lstm" else h0
    return x, hx


def _leaves(x, hx) -> list[torch.Tensor]:
    return [x, *(hx if isinstance(hx, tuple) else (hx,))]


def _loss(y, state, weights: list[torch.Tensor]) -> torch.Tensor:
    """A loss touching every output with random weights, so every gradient path is checked."""
    outs = [y, *(state if isinstance(state, tuple) else (state,))]
    return sum((o * w).sum() for o, w in zip(outs, weights))


def _run_and_grads(module, x, hx, loss_weights):
    y, state = module(x, hx)
    loss = _loss(y, state, loss_weights)
    params = list(module.parameters())
    grads = torch.autograd.grad(loss, _leaves(x, hx) + params)
    outs = [y, *(state if isinstance(state, tuple) else (state,))]
    return [o.detach() for o in outs], grads


def _compare(kind, ref, ours, x, hx, rng, rtol, atol):
    y_shape_outs, _ = _run_and_grads(ref, x, hx, [torch.ones(())] * 3)
    loss_weights = [torch.from_numpy(rng.standard_normal(o.shape)).to(o.dtype)
                    for o in y_shape_outs]
    outs_ref, grads_ref = _run_and_grads(ref, x, hx, loss_weights)
    outs, grads = _run_and_grads(ours, x, hx, loss_weights)
    for a, b in zip(outs, outs_ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert len(grads) == len(grads_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_matches_torch_float64(kind: str, options: dict, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, **options)
    ref.eval()
    ours.eval()
    x, hx = _inputs(kind, ours, rng)
    _compare(kind, ref, ours, x, hx, rng, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_matches_torch_float32(kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, dtype=torch.float32, num_layers=2, bidirectional=True)
    x, hx = _inputs(kind, ours, rng, dtype=torch.float32)
    _compare(kind, ref, ours, x, hx, rng, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_relu_rnn_and_zero_state_match_torch(kind: str, rng: np.random.Generator) -> None:
    options = {"nonlinearity": "relu"} if kind == "rnn" else {}
    ref, ours = _pair(kind, rng, num_layers=2, **options)
    x = _randn(rng, 5, 3, 3)
    y_ref, _ = ref(x)
    y, _ = ours(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, *ref.parameters()])
    g = torch.autograd.grad(y.square().sum(), [x, *ours.parameters()])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_unbatched_input_matches_torch(kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, num_layers=2)
    x = _randn(rng, 5, 3)
    h0 = _randn(rng, 2, 5)
    hx = (h0, _randn(rng, 2, 5)) if kind == "lstm" else h0
    (y_ref, s_ref), (y, s) = ref(x, hx), ours(x, hx)
    assert y.shape == (5, 5)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    for a, b in zip(s if kind == "lstm" else (s,), s_ref if kind == "lstm" else (s_ref,)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_packed_sequence_matches_torch(kind: str, rng: np.random.Generator) -> None:
    ref, ours = _pair(kind, rng, num_layers=2, bidirectional=True)
    lengths = torch.tensor([4, 6, 2, 4, 1])  # unsorted, with a tie
    x, hx = _inputs(kind, ours, rng, T=6, B=5)
    y_ref, s_ref = ref(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
    y, s = ours(pack_padded_sequence(x, lengths, enforce_sorted=False), hx)
    torch.testing.assert_close(y.data, y_ref.data, rtol=1e-10, atol=1e-12)
    assert torch.equal(y.batch_sizes, y_ref.batch_sizes)
    assert torch.equal(y.sorted_indices, y_ref.sorted_indices)
    states_ref = s_ref if kind == "lstm" else (s_ref,)
    states = s if kind == "lstm" else (s,)
    for a, b in zip(states, states_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    weights = [torch.from_numpy(rng.standard_normal(t.shape)) for t in (y.data, *states)]
    loss_ref = sum((t * w).sum() for t, w in zip((y_ref.data, *states_ref), weights))
    loss = sum((t * w).sum() for t, w in zip((y.data, *states), weights))
    leaves = _leaves(x, hx)
    g_ref = torch.autograd.grad(loss_ref, leaves + list(ref.parameters()))
    g = torch.autograd.grad(loss, leaves + list(ours.parameters()))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lengths_keyword_matches_packed_input(rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng, batch_first=True)
    lengths = torch.tensor([3, 5, 1])
    x, hx = _inputs("lstm", ours, rng, T=5, B=3)
    y, (h, c) = ours(x, hx, lengths=lengths)
    y_packed, (h_p, c_p) = ours(pack_padded_sequence(x, lengths, batch_first=True,
                                                     enforce_sorted=False), hx)
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(y_packed, batch_first=True)
    torch.testing.assert_close(y, padded, rtol=0, atol=0)
    torch.testing.assert_close(h, h_p, rtol=0, atol=0)
    torch.testing.assert_close(c, c_p, rtol=0, atol=0)
    assert torch.all(y[2, 1:] == 0) and torch.any(y[1, 4] != 0)


def test_lengths_with_packed_input_is_rejected(rng: np.random.Generator) -> None:
    _, ours = _pair("gru", rng)
    x, _ = _inputs("gru", ours, rng, T=4, B=2)
    packed = pack_padded_sequence(x, torch.tensor([4, 2]))
    with pytest.raises(ValueError, match="lengths: expected None with a PackedSequence"):
        ours(packed, lengths=torch.tensor([4, 2]))


GRADCHECK_CASES = [(kind, o) for kind in PAIRS for o in OPTIONS[:-1]] + [
    ("rnn", {"nonlinearity": "relu"}), ("rnn", {"nonlinearity": "sigmoid", "num_layers": 2}),
]


@pytest.mark.parametrize("kind,options", GRADCHECK_CASES,
                         ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in o.items()) or 'default'}"
                              for k, o in GRADCHECK_CASES])
def test_gradcheck(kind: str, options: dict, rng: np.random.Generator) -> None:
    torch.manual_seed(int(rng.integers(2**31)))
    module = PAIRS[kind][1](3, 4, **options).double()
    x, hx = _inputs(kind, module, rng, T=4, B=2)
    leaves = _leaves(x, hx)
    params = list(module.parameters())

    def run(*tensors):
        x_, *state = tensors[: len(leaves)]
        weights = dict(zip([n for n, _ in module.named_parameters()], tensors[len(leaves):]))
        y, s = torch.func.functional_call(module, weights,
                                          (x_, tuple(state) if kind == "lstm" else state[0]))
        return (y, *(s if kind == "lstm" else (s,)))

    assert torch.autograd.gradcheck(run, (*leaves, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_gradcheck_with_lengths_and_dropout(kind: str, rng: np.random.Generator) -> None:
    torch.manual_seed(int(rng.integers(2**31)))
    module = PAIRS[kind][1](3, 4, num_layers=2, dropout=0.4, bidirectional=True).double()
    x, hx = _inputs(kind, module, rng, T=5, B=3)
    lengths = torch.tensor([5, 2, 3])
    seed = int(rng.integers(2**31))

    def run(x_):
        torch.manual_seed(seed)  # the same dropout masks on every evaluation
        y, s = module(x_, hx, lengths=lengths)
        return (y, *(s if kind == "lstm" else (s,)))

    assert torch.autograd.gradcheck(run, (x,), eps=1e-6, atol=1e-6)


def test_dropout_follows_training_flag_and_torch_seed(rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng, num_layers=3, dropout=0.5)
    x, hx = _inputs("lstm", ours, rng)
    torch.manual_seed(7)
    y1, _ = ours(x, hx)
    torch.manual_seed(7)
    y2, _ = ours(x, hx)
    y3, _ = ours(x, hx)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert not torch.allclose(y1, y3)
    ours.eval()
    ref.eval()
    y_eval, _ = ours(x, hx)
    torch.testing.assert_close(y_eval, ref(x, hx)[0], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(y_eval, y1)


def test_kernel_reads_tensor_memory_without_copy(rng: np.random.Generator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, ours = _pair("lstm", rng)
    x, (h0, c0) = _inputs("lstm", ours, rng)
    seen = {}
    original = reference_lstm.lstm_forward

    def spy(x_, h0_, c0_, w_ih, w_hh, b_ih, b_hh, lengths=None):
        seen.update(x=x_.ctypes.data, w_ih=w_ih.ctypes.data, w_hh=w_hh.ctypes.data,
                    b_ih=b_ih.ctypes.data, b_hh=b_hh.ctypes.data)
        return original(x_, h0_, c0_, w_ih, w_hh, b_ih, b_hh, lengths=lengths)

    monkeypatch.setattr(reference_lstm, "lstm_forward", spy)
    y, _ = ours(x, (h0, c0))
    assert seen == {
        "x": x.data_ptr(), "w_ih": ours.weight_ih_l0.data_ptr(),
        "w_hh": ours.weight_hh_l0.data_ptr(), "b_ih": ours.bias_ih_l0.data_ptr(),
        "b_hh": ours.bias_hh_l0.data_ptr(),
    }
    assert y.shape == (6, 4, 5)


def test_optimizer_steps_match_torch(rng: np.random.Generator) -> None:
    ref, ours = _pair("gru", rng, num_layers=2)
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2)
    opt = torch.optim.Adam(ours.parameters(), lr=1e-2)
    for _ in range(3):
        x = torch.from_numpy(rng.standard_normal((5, 3, 3)))
        target = torch.from_numpy(rng.standard_normal((5, 3, 5)))
        for module, optimizer in ((ref, opt_ref), (ours, opt)):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(module(x)[0], target).backward()
            optimizer.step()
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_state_dict_torch_save_and_deepcopy(rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x, hx = _inputs("lstm", ours, rng)
    y, _ = ours(x, hx)  # builds the cached kernel layer that pickling must leave out
    buffer = io.BytesIO()
    torch.save(ours, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    clone = copy.deepcopy(ours)
    assert isinstance(loaded, crt.LSTM)
    for other in (loaded, clone):
        torch.testing.assert_close(other(x, hx)[0], y, rtol=0, atol=0)


def test_moving_to_another_dtype_rebinds_weights(rng: np.random.Generator) -> None:
    ref, ours = _pair("rnn", rng)
    x = _randn(rng, 4, 2, 3)
    ours(x)
    ours.float()
    ref.float()
    y = ours(x.float())[0]
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ref(x.float())[0], rtol=1e-5, atol=1e-6)


def test_cpu_autocast_runs_in_the_weights_dtype(rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng, dtype=torch.float32)
    x = _randn(rng, 5, 2, 3, dtype=torch.float32)
    expected = ours(x)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ours(x.bfloat16())[0]
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, ours(x.bfloat16().float())[0], rtol=0, atol=0)
    torch.testing.assert_close(y, expected, rtol=2e-2, atol=2e-2)


def test_input_dtype_must_match_weights(rng: np.random.Generator) -> None:
    _, ours = _pair("gru", rng)
    with pytest.raises(ValueError, match=r"input: expected dtype torch.float64 .* got torch.float32"):
        ours(_randn(rng, 4, 2, 3, dtype=torch.float32))


@pytest.mark.parametrize("options", [{"proj_size": 2}, {"proj_size": 3, "num_layers": 2,
                                      "bidirectional": True, "batch_first": True}],
                         ids=["proj", "proj-2layers-bidirectional"])
def test_lstm_projections_match_torch(options: dict, rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng, **options)
    assert "weight_hr_l0" in dict(ours.named_parameters())
    x, hx = _inputs("lstm", ours, rng)
    assert hx[0].shape[-1] == options["proj_size"]
    _compare("lstm", ref, ours, x, hx, rng, rtol=1e-10, atol=1e-12)


def test_lstm_projection_with_packed_input_matches_torch(rng: np.random.Generator) -> None:
    ref, ours = _pair("lstm", rng, proj_size=2, bidirectional=True)
    x = _randn(rng, 6, 3, 3)

    def packed():
        return pack_padded_sequence(x, torch.tensor([6, 2, 4]), enforce_sorted=False)

    (y_ref, (h_ref, c_ref)), (y, (h, c)) = ref(packed()), ours(packed())
    torch.testing.assert_close(y.data, y_ref.data, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=1e-10, atol=1e-12)
    w = torch.from_numpy(rng.standard_normal(y.data.shape))
    g_ref = torch.autograd.grad((y_ref.data * w).sum(), [x, *ref.parameters()])
    g = torch.autograd.grad((y.data * w).sum(), [x, *ours.parameters()])
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_rnn_rejects_unknown_nonlinearity() -> None:
    with pytest.raises(ValueError, match=r"nonlinearity: expected one of .* got 'gelu'"):
        crt.RNN(3, 5, nonlinearity="gelu")


def test_wrong_state_shape_names_the_state(rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng)
    x, (h0, c0) = _inputs("lstm", ours, rng, B=4)
    with pytest.raises(ValueError, match=r"c0: expected shape \(1, 4, 5\), got \(1, 3, 5\)"):
        ours(x, (h0, c0[:, :3]))


def test_second_backward_with_retained_graph_gives_the_same_grads(
        rng: np.random.Generator) -> None:
    _, ours = _pair("lstm", rng, num_layers=2)
    x, hx = _inputs("lstm", ours, rng)
    y, _ = ours(x, hx)
    loss = (y * torch.from_numpy(rng.standard_normal(y.shape))).sum()
    first = torch.autograd.grad(loss, list(ours.parameters()), retain_graph=True)
    kept = [g.clone() for g in first]
    second = torch.autograd.grad(loss, list(ours.parameters()))
    for a, b, c in zip(first, kept, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(c, b, rtol=0, atol=0)


TORCH_VARIANTS = {
    "peephole": dict(peephole=True),
    "no-forget-gate": dict(forget_gate=False),
    "layer-norm": dict(layer_norm=True),
    "peephole-no-forget-gate-proj": dict(peephole=True, forget_gate=False, proj_size=2),
    "all": dict(peephole=True, forget_gate=False, proj_size=2, layer_norm=True),
}


@pytest.mark.parametrize("variant", sorted(TORCH_VARIANTS))
def test_lstm_variant_matches_the_cuda_rnn_layer(variant: str, rng: np.random.Generator) -> None:
    import cuda_rnn as cr

    options = dict(TORCH_VARIANTS[variant], num_layers=2, bidirectional=True)
    ours = crt.LSTM(3, 5, **options).double()
    layer = cr.LSTM(3, 5, dtype="float64", **options)
    assert {n: tuple(p.shape) for n, p in ours.named_parameters()} == {
        n: tuple(p.shape) for n, p in layer.parameters().items()}
    layer.load_state_dict({n: p.detach().numpy() for n, p in ours.named_parameters()})
    x, hx = _inputs("lstm", ours, rng)
    lengths = np.array([6, 3, 5, 1])
    y, (h, c) = ours(x, hx, lengths=lengths)
    y_ref, (h_ref, c_ref) = layer(x.detach().numpy(), tuple(s.detach().numpy() for s in hx),
                                  lengths=lengths)
    for got, want in ((y, y_ref), (h, h_ref), (c, c_ref)):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dh, dc = (rng.standard_normal(s.shape) for s in (h, c))
    loss = (y * torch.from_numpy(dy)).sum() + (h * torch.from_numpy(dh)).sum() + (
        c * torch.from_numpy(dc)).sum()
    names = [n for n, _ in ours.named_parameters()]
    grads = torch.autograd.grad(loss, [x, *hx, *ours.parameters()])
    dx_ref, (dh0_ref, dc0_ref) = layer.backward(dy, (dh, dc))
    for got, want in zip(grads[:3], (dx_ref, dh0_ref, dc0_ref)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)
    for name, got in zip(names, grads[3:]):
        np.testing.assert_allclose(got.numpy(), layer.grads[name], rtol=1e-10, atol=1e-12,
                                   err_msg=name)


@pytest.mark.parametrize("variant", sorted(TORCH_VARIANTS))
def test_lstm_variant_gradcheck(variant: str, rng: np.random.Generator) -> None:
    ours = crt.LSTM(3, 4, **TORCH_VARIANTS[variant]).double()
    x, hx = _inputs("lstm", ours, rng, T=4, B=2)
    params = list(ours.parameters())

    names = [n for n, _ in ours.named_parameters()]

    def run(x, h0, c0, *weights):
        y, (h, c) = torch.func.functional_call(ours, dict(zip(names, weights)), (x, (h0, c0)))
        return y, h, c

    assert torch.autograd.gradcheck(run, (x, *hx, *[p.detach().requires_grad_() for p in params]))


def test_lstm_variant_state_dict_round_trip_and_repr(rng: np.random.Generator) -> None:
    a = crt.LSTM(3, 5, peephole=True, forget_gate=False, batch_first=True)
    assert "peephole=True, forget_gate=False" in repr(a)
    assert a.weight_ih_l0.shape == (15, 3) and a.weight_ch_l0.shape == (10,)
    k, largest = 1 / np.sqrt(5), float(a.weight_ch_l0.detach().abs().max())
    assert k / 4 < largest <= k
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = crt.LSTM(3, 5, peephole=True, forget_gate=False, batch_first=True)
    b.load_state_dict(torch.load(buffer))
    x = _randn(rng, 2, 4, 3, dtype=torch.float32)
    torch.testing.assert_close(b(x)[0], a(x)[0], rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="size mismatch for weight_ih_l0"):
        crt.LSTM(3, 5).load_state_dict(a.state_dict(), strict=False)


def test_lstm_forget_bias_sets_the_forget_rows() -> None:
    m = crt.LSTM(3, 5, num_layers=2, bidirectional=True, forget_bias=1.5)
    for name, p in m.named_parameters():
        if name.startswith("bias"):
            want = 1.5 if name.startswith("bias_ih") else 0.0
            assert torch.all(p[5:10] == want), name
            assert torch.all(p[:5].abs() <= 1 / np.sqrt(5)) and p[:5].abs().max() > 0, name
    assert "forget_bias=1.5" in repr(m)


@pytest.mark.parametrize("options, match", [
    (dict(forget_bias=1.0, bias=False), "forget_bias: expected None with bias=False"),
    (dict(forget_bias=1.0, forget_gate=False), "forget_bias: expected None with forget_gate"),
    (dict(forget_bias=float("nan")), "forget_bias: expected None or a finite float"),
])
def test_lstm_variant_options_are_checked(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        crt.LSTM(3, 5, **options)


@pytest.mark.parametrize("kind, options", [
    ("lstm", dict(zoneout=0.2, zoneout_cell=0.3, recurrent_dropout=0.25, weight_dropout=0.3,
                  peephole=True)),
    ("gru", dict(zoneout=0.2, recurrent_dropout=0.25, weight_dropout=0.3)),
    ("rnn", dict(zoneout=0.2, recurrent_dropout=0.25, weight_dropout=0.3)),
])
def test_regularised_modules_match_the_layer_with_the_seed_torch_draws(kind, options, rng):
    import cuda_rnn as cr

    ours = {"lstm": crt.LSTM, "gru": crt.GRU, "rnn": crt.RNN}[kind](3, 5, **options).double()
    layer = {"lstm": cr.LSTM, "gru": cr.GRU, "rnn": cr.RNN}[kind](3, 5, dtype="float64",
                                                                  **options)
    layer.load_state_dict({n: p.detach().numpy() for n, p in ours.named_parameters()})
    for name, value in options.items():
        assert f"{name}={value!r}" in repr(ours)
    x, hx = _inputs(kind, ours, rng)
    torch.manual_seed(7)
    y, state = ours(x, hx)
    torch.manual_seed(7)
    layer.rng = np.random.default_rng(int(torch.randint(2**62, (1,)).item()))
    host_hx = tuple(s.detach().numpy() for s in hx) if kind == "lstm" else hx.detach().numpy()
    y_ref, _ = layer(x.detach().numpy(), host_hx)
    np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    grads = torch.autograd.grad((y * torch.from_numpy(dy)).sum(), [x, *ours.parameters()])
    dx_ref, _ = layer.backward(dy)
    np.testing.assert_allclose(grads[0].numpy(), dx_ref, rtol=1e-10, atol=1e-12)
    for (name, _), got in zip(ours.named_parameters(), grads[1:]):
        np.testing.assert_allclose(got.numpy(), layer.grads[name], rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    ours.eval()
    layer.eval()
    np.testing.assert_allclose(ours(x, hx)[0].detach().numpy(),
                               layer(x.detach().numpy(), host_hx)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [crt.LSTM, crt.GRU, crt.RNN])
def test_regulariser_probabilities_are_checked(cls):
    with pytest.raises(ValueError, match=r"zoneout: expected a number in \[0, 1\), got 1.0"):
        cls(3, 5, zoneout=1.0)
