"""profiles/bench.py's cases run on the simulator: every variant's inputs fit its cell
function, and the ours side of a case returns the reference's gradients' shapes.

The timings themselves need a GPU and torch CUDA tensors; this holds the wiring.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu

BENCH = Path(__file__).resolve().parents[1] / "profiles" / "bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_case_runs_forward_and_backward_with_the_chosen_loops() -> None:
    import cupy

    from cuda_rnn.cuda.persistent import H100

    bench = _bench()
    shape = (5, 3, 4, 6)
    found = bench.cases(("lstm", "gru", "rnn"), tuple(bench.VARIANTS), [shape])
    assert [(name, spec.cell) for name, spec, _, _ in found] == [
        ("", "lstm"), ("", "gru"), ("", "rnn"), ("peephole", "lstm"), ("proj256", "lstm"),
        ("zoneout-recdrop", "lstm"), ("layernorm", "lstm")]
    for name, spec, torch_options, _ in found:
        assert torch_options.get("proj_size", 0) == spec.options.proj_size
        inputs = bench._inputs(cupy, spec, "float32", shape, seed=1)
        assert inputs["dy"].shape == (5, 3, spec.output_size(6))
        assert sorted(inputs["masks"]) == (["recurrent_mask", "zoneout"]
                                           if name == "zoneout-recdrop" else [])
        for algo in ("alternating", "graph", "auto"):
            fwd_algo, bwd_algo, reason = bench.describe_choice(spec, algo, "float32", shape,
                                                               H100)
            assert "forward: " in reason and "backward: " in reason
            if bench.regularised(spec):
                assert "persistent" not in (fwd_algo, bwd_algo)
            _, both = bench._ours(spec, inputs, fwd_algo, bwd_algo)
            both()
    with pytest.raises(ValueError, match="'persistent' cannot run this layer"):
        bench.describe_choice(found[3][1], "persistent", "float32", shape, H100)
