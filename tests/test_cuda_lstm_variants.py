"""The CUDA LSTM variants (peepholes, no forget gate, projection) against the NumPy reference.

Every step loop that runs them ("alternating" and "graph"), every storage dtype, the shapes
of test_cuda_cells.py, with lengths and without bias; buffers start as NaN
(workspace.poisoned), so an element a kernel forgets to write fails the comparison. The
layers add num_layers, bidirectional and the algo choice.
"""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.reference import lstm as ref_lstm

pytestmark = pytest.mark.gpu

VARIANTS = {
    "peephole": dict(peephole=True, forget_gate=True, proj=0),
    "no-forget-gate": dict(peephole=False, forget_gate=False, proj=0),
    "proj": dict(peephole=False, forget_gate=True, proj=3),
    "peephole-no-forget-gate": dict(peephole=True, forget_gate=False, proj=0),
    "peephole-proj": dict(peephole=True, forget_gate=True, proj=2),
    "no-forget-gate-proj": dict(peephole=False, forget_gate=False, proj=1),
    "all": dict(peephole=True, forget_gate=False, proj=5),
}
DTYPES = ("float64", "float32", "float16", "bfloat16")
# (T, B, I, H): B=1, T=1, H=1, odd sizes, H not a multiple of 32, H above one block of 256.
SHAPES = [(1, 1, 1, 1), (6, 1, 3, 1), (5, 4, 33, 31), (7, 5, 17, 69), (4, 3, 6, 300)]


def _problem(rng: np.random.Generator, shape: tuple[int, int, int, int], variant: dict,
             bias: bool, with_lengths: bool) -> dict[str, np.ndarray | None]:
    from cuda_helpers import random_problem

    G = 4 if variant["forget_gate"] else 3
    return random_problem(rng, shape, G, bias, with_lengths, proj=variant["proj"],
                          peepholes=G - 1 if variant["peephole"] else 0)


def _run(p: dict, variant: dict, dtype: str, algo: str) -> None:
    from cuda_helpers import assert_matches, problem_on_device
    from cuda_rnn.cuda import lstm
    from cuda_rnn.cuda.graph import GraphCache
    from cuda_rnn.cuda.workspace import poisoned

    dev, host = problem_on_device(p, dtype)
    args = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh", "lengths")
    forget_gate = variant["forget_gate"]
    graphs = GraphCache() if algo == "graph" else None
    with poisoned():
        y, h_n, c_n, cache = lstm.lstm_forward(*[dev[k] for k in args], w_hr=dev["w_hr"],
                                               w_ch=dev["w_ch"], forget_gate=forget_gate,
                                               algo=algo, graphs=graphs)
        grads = lstm.lstm_backward(dev["dy"], dev["dh_n"], dev["dc_n"], cache, algo=algo,
                                   graphs=graphs)
    ry, rh, rc, rcache = ref_lstm.lstm_forward(*[host[k] for k in args], w_hr=host["w_hr"],
                                               w_ch=host["w_ch"], forget_gate=forget_gate)
    rgrads = ref_lstm.lstm_backward(host["dy"], host["dh_n"], host["dc_n"], rcache)
    for name, got, want in zip(("y", "h_n", "c_n"), (y, h_n, c_n), (ry, rh, rc)):
        assert_matches(got, want, dtype, name)
    names = ("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh") + (
        ("dw_hr",) if variant["proj"] else ()) + (("dw_ch",) if variant["peephole"] else ())
    assert len(grads) == len(names) == len(rgrads)
    for name, got, want in zip(names, grads, rgrads):
        assert_matches(got, want, dtype, name)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "T{}B{}I{}H{}".format(*s))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_matches_reference(rng: np.random.Generator, variant: str, dtype: str,
                                   shape: tuple, bias: bool, with_lengths: bool) -> None:
    options = VARIANTS[variant]
    _run(_problem(rng, shape, options, bias, with_lengths), options, dtype, "alternating")


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_graph_matches_reference(rng: np.random.Generator, variant: str,
                                         dtype: str) -> None:
    options = VARIANTS[variant]
    _run(_problem(rng, (6, 3, 5, 37), options, True, True), options, dtype, "graph")
