"""The regularisers on the single-step cells: finite differences through an unrolled cell
with its masks held, the per-sequence masks held until reset_masks, eval mode, and the CUDA
cells against the CPU ones with the same seed (simulator)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import cuda_rnn as cr

CELLS = {"lstm": cr.LSTMCell, "gru": cr.GRUCell, "rnn": cr.RNNCell}
OPTIONS = {
    "zoneout": dict(zoneout=0.3),
    "recurrent": dict(recurrent_dropout=0.4),
    "weight": dict(weight_dropout=0.3),
    "all": dict(zoneout=0.3, recurrent_dropout=0.4, weight_dropout=0.3),
}
CASES = [(c, o) for c in CELLS for o in OPTIONS] + [("lstm", "zoneout_cell")]


def _options(cell: str, name: str) -> dict:
    if name == "zoneout_cell":
        return dict(zoneout_cell=0.4)
    return dict(OPTIONS[name], **(dict(zoneout_cell=0.2) if cell == "lstm" and name == "all"
                                  else {}))


def _unroll(cell, xs, state):
    """The cell over the steps of ``xs`` from ``state``: every step's state."""
    out = []
    for x in xs:
        state = cell(x, state)
        out.append(state)
    return out


def _loss(outs, weights):
    return sum(float(np.sum(np.asarray(s) * w)) for step, ws in zip(outs, weights)
               for s, w in zip(step if isinstance(step, tuple) else (step,), ws))


@pytest.mark.parametrize("cell, name", CASES)
def test_unrolled_cell_gradients_match_finite_differences_with_masks_held(rng, cell, name):
    layer = CELLS[cell](3, 4, dtype="float64", device="cpu", seed=int(rng.integers(1000)),
                        **_options(cell, name))
    T, B = 4, 2
    xs = rng.standard_normal((T, B, 3))
    sizes = layer.spec.state_sizes(4)
    state = tuple(rng.standard_normal((B, n)) for n in sizes)
    state = state if cell == "lstm" else state[0]
    weights = [[rng.standard_normal((B, n)) for n in sizes] for _ in range(T)]
    start = copy.deepcopy(layer.rng.bit_generator.state)

    def run() -> list:
        layer.rng.bit_generator.state = copy.deepcopy(start)
        layer.reset_masks()
        return _unroll(layer, xs, state)

    run()
    layer.zero_grad()
    carried = [np.zeros((B, n)) for n in sizes]
    for t in range(T - 1, -1, -1):
        total = [w + c for w, c in zip(weights[t], carried)]
        _, d_prev = layer.backward(*total)
        carried = list(d_prev) if cell == "lstm" else [d_prev]
    eps = 1e-6
    for pname, p in layer.parameters().items():
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + eps
            up = _loss(run(), weights)
            p[i] = keep - eps
            down = _loss(run(), weights)
            p[i] = keep
            numeric[i] = (up - down) / (2 * eps)
        err = np.abs(layer.grads[pname] - numeric).max() / max(np.abs(numeric).max(), 1.0)
        assert err < 1e-6, (pname, err)


def test_recurrent_and_weight_dropout_masks_hold_until_reset_masks(rng):
    from cuda_rnn import regularisers

    cell = cr.RNNCell(3, 5, bias=False, dtype="float64", device="cpu", seed=3,
                      recurrent_dropout=0.5, weight_dropout=0.4)
    w_ih, w_hh = cell.parameters()["weight_ih"], cell.parameters()["weight_hh"]
    draws = copy.deepcopy(cell.rng)

    def expected() -> np.ndarray:
        masks = regularisers.draw(cell.spec, draws, 1, 2, 5, True, regularisers.PER_SEQUENCE)
        m = masks.cell["recurrent_mask"]
        assert set(np.unique(m)) == {0.0, 2.0}
        return np.tanh(x @ w_ih.T + (h * m) @ (w_hh * masks.weight).T)

    x, h = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    want = expected()
    for _ in range(3):  # the same masks at every step of a sequence
        np.testing.assert_allclose(cell(x, h), want, rtol=1e-12)
    cell.reset_masks()
    redrawn = expected()
    assert not np.allclose(redrawn, want)
    np.testing.assert_allclose(cell(x, h), redrawn, rtol=1e-12)
    assert cell(rng.standard_normal((3, 3)), None).shape == (3, 5)
    assert draws.bit_generator.state != cell.rng.bit_generator.state  # a new batch size redraws


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_eval_mode_zoneout_is_its_expectation_and_the_dropouts_the_identity(rng, cell):
    options = dict(zoneout=0.3, recurrent_dropout=0.4, weight_dropout=0.3)
    if cell == "lstm":
        options["zoneout_cell"] = 0.2
    regularised = CELLS[cell](3, 4, dtype="float64", device="cpu", seed=1, **options).eval()
    plain = CELLS[cell](3, 4, dtype="float64", device="cpu", seed=1).eval()
    plain.load_state_dict(regularised.state_dict())
    x = rng.standard_normal((2, 3))
    sizes = plain.spec.state_sizes(4)
    state = tuple(rng.standard_normal((2, n)) for n in sizes)
    state = state if cell == "lstm" else state[0]
    got, new = regularised(x, state), plain(x, state)
    probabilities = (0.3, 0.2) if cell == "lstm" else (0.3,)
    parts = (lambda s: s) if cell == "lstm" else (lambda s: (s,))
    for g, n, old, p in zip(parts(got), parts(new), parts(state), probabilities):
        np.testing.assert_allclose(g, p * old + (1 - p) * n, rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_cuda_cell_with_every_regulariser_matches_the_cpu_cell(rng, cell):
    from cuda_helpers import assert_matches
    from cuda_rnn.backend import to_numpy

    options = dict(zoneout=0.3, recurrent_dropout=0.5, weight_dropout=0.5)
    if cell == "lstm":
        options["zoneout_cell"] = 0.2
    cpu = CELLS[cell](3, 6, dtype="float64", device="cpu", seed=4, **options)
    gpu = CELLS[cell](3, 6, dtype="float64", device="cuda", seed=4, **options)
    gpu.load_state_dict(cpu.state_dict())
    xs = rng.standard_normal((4, 2, 3))
    sizes = cpu.spec.state_sizes(6)
    weights = [[rng.standard_normal((2, n)) for n in sizes] for _ in range(4)]
    outs = {}
    for name, layer in (("cpu", cpu), ("gpu", gpu)):
        outs[name] = _unroll(layer, xs, None)
        carried = [None] * len(sizes)
        dxs = []
        for t in range(3, -1, -1):
            total = [w if c is None else w + to_numpy(c)
                     for w, c in zip(weights[t], carried)]
            dx, d_prev = layer.backward(*total)
            dxs.append(dx)
            carried = list(d_prev) if cell == "lstm" else [d_prev]
        outs[name] = (outs[name], dxs, carried)
    for (a, b) in zip(outs["gpu"][0], outs["cpu"][0]):
        for part_a, part_b in zip(a if cell == "lstm" else (a,), b if cell == "lstm" else (b,)):
            assert_matches(part_a, part_b, "float64", "state")
    for a, b in zip(outs["gpu"][1], outs["cpu"][1]):
        assert_matches(a, b, "float64", "dx")
    for name in cpu.grads:
        assert_matches(gpu.grads[name], cpu.grads[name], "float64", f"grad {name}")
