"""Property tests over random shapes (T, B, H down to 1): BPTT gradients equal directional
finite differences, and (with torch installed) the layers equal torch's."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cuda_rnn as cr
from helpers import rel_err

LAYERS = {"lstm": cr.LSTM, "gru": cr.GRU, "rnn": cr.RNN}

configs = st.fixed_dictionaries(
    {
        "cell": st.sampled_from(sorted(LAYERS)),
        "T": st.integers(1, 6),
        "B": st.integers(1, 4),
        "I": st.integers(1, 5),
        "H": st.integers(1, 5),
        "num_layers": st.integers(1, 2),
        "bidirectional": st.booleans(),
        "bias": st.booleans(),
        "use_lengths": st.booleans(),
        "seed": st.integers(0, 2**31 - 1),
    }
)


def _setup(c):
    rng = np.random.default_rng(c["seed"])
    layer = LAYERS[c["cell"]](
        c["I"], c["H"], num_layers=c["num_layers"], bidirectional=c["bidirectional"],
        bias=c["bias"], dtype="float64", seed=c["seed"],
    )
    x = rng.standard_normal((c["T"], c["B"], c["I"]))
    lengths = rng.integers(1, c["T"] + 1, size=c["B"]) if c["use_lengths"] else None
    return rng, layer, x, lengths


def _loss(layer, x, lengths, wy, ws):
    y, s = layer(x, None, lengths)
    s = s if isinstance(s, tuple) else (s,)
    return float((y * wy).sum() + sum((a * w).sum() for a, w in zip(s, ws)))


@settings(max_examples=60, deadline=None)
@given(configs)
def test_directional_derivative_matches_bptt(c):
    """<grad, v> from backward equals (L(p + eps v) - L(p - eps v)) / 2 eps for a random
    direction v over the input and all parameters at once."""
    rng, layer, x, lengths = _setup(c)
    y, s = layer(x, None, lengths)
    s = s if isinstance(s, tuple) else (s,)
    wy = rng.standard_normal(y.shape)
    ws = [rng.standard_normal(a.shape) for a in s]
    dx, _ = layer.backward(wy, tuple(ws) if len(ws) == 2 else ws[0])
    params = layer.parameters()
    vx = rng.standard_normal(x.shape)
    vp = {k: rng.standard_normal(p.shape) for k, p in params.items()}
    analytic = float((dx * vx).sum() + sum((layer.grads[k] * vp[k]).sum() for k in params))
    eps = 1e-6

    def shifted(sign):
        for k, p in params.items():
            p += sign * eps * vp[k]
        value = _loss(layer, x + sign * eps * vx, lengths, wy, ws)
        for k, p in params.items():
            p -= sign * eps * vp[k]
        return value

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    assert abs(analytic - numeric) <= 1e-6 * max(1.0, abs(numeric))


@settings(max_examples=40, deadline=None)
@given(configs)
def test_matches_torch_on_random_shapes(c):
    torch = pytest.importorskip("torch")
    rng, layer, x, lengths = _setup(c)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[c["cell"]]
    theirs = cls(c["I"], c["H"], num_layers=c["num_layers"], bidirectional=c["bidirectional"],
                 bias=c["bias"]).double()
    layer.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    y, _ = layer(x, None, lengths)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    inp = xt if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.tensor(lengths), enforce_sorted=False
    )
    yt, _ = theirs(inp)
    if lengths is not None:
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, total_length=c["T"])
    (yt * torch.tensor(dy)).sum().backward()
    assert rel_err(y, yt.detach().numpy()) < 1e-8
    assert rel_err(dx, xt.grad.numpy()) < 1e-8
    for name, p in theirs.named_parameters():
        assert rel_err(layer.grads[name], p.grad.numpy()) < 1e-8, name
