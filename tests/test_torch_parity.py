"""Against torch.nn.RNN / LSTM / GRU (and the cells) in float64: outputs, final states, input and
state gradients and every parameter gradient to 1e-8 relative, including lengths against
pack_padded_sequence and bidirectional multi-layer stacks."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from helpers import random_state, rel_err

torch = pytest.importorskip("torch")

TOL = 1e-8
OURS = {"lstm": cr.LSTM, "gru": cr.GRU, "rnn": cr.RNN}
THEIRS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def _torch_run(module, x, state, lengths, dy, dstate, batch_first):
    """Forward + backward of a torch module with loss <dy, y> + <dstate, state_n>."""
    xt = torch.tensor(x, requires_grad=True)
    st = tuple(torch.tensor(s, requires_grad=True) for s in state)
    arg = st if len(st) == 2 else st[0]
    inp = xt
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=False
        )
    y, fin = module(inp, arg)
    if lengths is not None:
        T = x.shape[1] if batch_first else x.shape[0]
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=batch_first, total_length=T)
    fin = fin if isinstance(fin, tuple) else (fin,)
    loss = (y * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(fin, dstate))
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in module.named_parameters()}
    return (y.detach().numpy(), [f.detach().numpy() for f in fin], xt.grad.numpy(),
            [s.grad.numpy() for s in st], grads)


def _compare(cell, rng, T, B, I, H, lengths=None, **kw):
    kwargs = dict(kw)
    if cell == "rnn" and "nonlinearity" in kwargs and kwargs["nonlinearity"] == "sigmoid":
        pytest.skip("torch has no sigmoid RNN")
    theirs = THEIRS[cell](I, H, **kwargs).double()
    ours = OURS[cell](I, H, dtype="float64", **kwargs)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    D = 2 if kwargs.get("bidirectional") else 1
    L = kwargs.get("num_layers", 1)
    batch_first = kwargs.get("batch_first", False)
    x = rng.standard_normal((B, T, I) if batch_first else (T, B, I))
    state = random_state(rng, cell, (L * D, B, H))
    state = state if isinstance(state, tuple) else (state,)
    if kwargs.get("proj_size"):
        state = (state[0][..., : kwargs["proj_size"]].copy(), state[1])
    y, fin = ours(x, state if cell == "lstm" else state[0], lengths)
    fin = fin if isinstance(fin, tuple) else (fin,)
    dy = rng.standard_normal(y.shape)
    dstate = [rng.standard_normal(f.shape) for f in fin]
    dx, d0 = ours.backward(dy, tuple(dstate) if cell == "lstm" else dstate[0])
    d0 = d0 if isinstance(d0, tuple) else (d0,)
    ty, tfin, tdx, td0, tgrads = _torch_run(theirs, x, state, lengths, dy, dstate, batch_first)
    assert rel_err(y, ty) < TOL
    for a, b in zip(fin, tfin):
        assert rel_err(a, b) < TOL
    assert rel_err(dx, tdx) < TOL
    for a, b in zip(d0, td0):
        assert rel_err(a, b) < TOL
    assert set(ours.grads) == set(tgrads)
    for name, g in tgrads.items():
        assert rel_err(ours.grads[name], g) < TOL, name


@pytest.mark.parametrize("cell", sorted(OURS))
@pytest.mark.parametrize(
    "kw",
    [
        dict(),
        dict(num_layers=3),
        dict(bidirectional=True),
        dict(num_layers=2, bidirectional=True),
        dict(num_layers=2, bidirectional=True, batch_first=True),
        dict(num_layers=2, bias=False),
    ],
    ids=lambda k: "-".join(f"{a}{b}" for a, b in k.items()) or "default",
)
def test_layers_match_torch(rng, cell, kw):
    _compare(cell, rng, T=7, B=4, I=5, H=6, **kw)


@pytest.mark.parametrize("cell", sorted(OURS))
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_lengths_match_pack_padded_sequence(rng, cell, bidirectional, batch_first):
    lengths = np.array([7, 3, 1, 5, 7])
    _compare(cell, rng, T=7, B=5, I=4, H=3, lengths=lengths, num_layers=2,
             bidirectional=bidirectional, batch_first=batch_first)


@pytest.mark.parametrize("kw", [dict(), dict(num_layers=2, bidirectional=True),
                                dict(num_layers=2, bidirectional=True, batch_first=True,
                                     bias=False)],
                         ids=["one-layer", "2layers-bidirectional", "batch-first-no-bias"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_projections_match_torch(rng, kw, with_lengths):
    lengths = np.array([7, 3, 1, 5]) if with_lengths else None
    _compare("lstm", rng, T=7, B=4, I=5, H=6, lengths=lengths, proj_size=3, **kw)


def test_relu_rnn_matches_torch(rng):
    _compare("rnn", rng, T=6, B=3, I=4, H=5, num_layers=2, nonlinearity="relu")


def test_long_sequence_matches_torch(rng):
    _compare("lstm", rng, T=200, B=2, I=3, H=8)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_cells_match_torch_unrolled(rng, cell):
    """Unrolling a cell T steps and backpropagating step by step equals torch's cell."""
    ours_cls = {"lstm": cr.LSTMCell, "gru": cr.GRUCell, "rnn": cr.RNNCell}[cell]
    theirs = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[cell](
        4, 5
    ).double()
    ours = ours_cls(4, 5, dtype="float64")
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    T, B = 4, 3
    xs = rng.standard_normal((T, B, 4))
    s0 = random_state(rng, cell, (B, 5))
    dhs = rng.standard_normal((T, B, 5))
    # ours: forward T steps, then backward T steps with dL/dh_t = dhs[t] added at each step
    state = s0
    for t in range(T):
        state = ours(xs[t], state)
    dxs = np.empty_like(xs)
    carry = None
    for t in range(T - 1, -1, -1):
        if cell == "lstm":
            dh = dhs[t] + (0 if carry is None else carry[0])
            dxs[t], carry = ours.backward(dh, None if carry is None else carry[1])
        else:
            dxs[t], carry = ours.backward(dhs[t] + (0 if carry is None else carry))
    xt = torch.tensor(xs, requires_grad=True)
    st = tuple(torch.tensor(s) for s in (s0 if cell == "lstm" else (s0,)))
    loss = 0
    state_t = st if cell == "lstm" else st[0]
    for t in range(T):
        state_t = theirs(xt[t], state_t)
        h = state_t[0] if cell == "lstm" else state_t
        loss = loss + (h * torch.tensor(dhs[t])).sum()
    loss.backward()
    assert rel_err(dxs, xt.grad.numpy()) < TOL
    for name, p in theirs.named_parameters():
        assert rel_err(ours.grads[name], p.grad.numpy()) < TOL, name


def test_default_init_range_matches_torch():
    """Default weights are U(-1/sqrt(H), 1/sqrt(H)), as in torch."""
    H = 16
    w = cr.LSTM(8, H, num_layers=2, dtype="float64", seed=0).parameters()
    bound = 1 / np.sqrt(H)
    values = np.concatenate([v.ravel() for v in w.values()])
    assert values.min() >= -bound and values.max() <= bound
    assert values.min() < -0.9 * bound and values.max() > 0.9 * bound
    assert abs(values.mean()) < 0.05 * bound
