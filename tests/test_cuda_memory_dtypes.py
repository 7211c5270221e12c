"""On device="cuda": a seed gives the CPU layer's weights (drawn on the host chunk by chunk),
input dtypes follow the CPU rule, and a forward larger than free device memory is a
MemoryError before any allocation."""
from __future__ import annotations

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn import init
from cuda_rnn.backend import to_numpy
from cuda_rnn.cuda.dtypes import bfloat16_bits

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
def test_a_seed_gives_the_cpu_weights_on_cuda(monkeypatch, dtype):
    monkeypatch.setattr(init, "CHUNK", 100)  # several chunks, the last one partial
    gru = cr.GRU(5, 9, num_layers=2, bidirectional=True, dtype=dtype, device="cuda", seed=21)
    cpu = cr.GRU(5, 9, num_layers=2, bidirectional=True, dtype="float64", device="cpu", seed=21)
    assert cpu.parameters()["weight_hh_l0"].size > 2 * init.CHUNK
    for name, want in cpu.state_dict().items():
        got = to_numpy(gru.state_dict()[name])
        if dtype == "bfloat16":
            np.testing.assert_array_equal(got.view(np.uint16),
                                          bfloat16_bits(want.astype(np.float32)), err_msg=name)
        else:
            np.testing.assert_array_equal(got, want.astype(dtype), err_msg=name)
    assert gru.rng.random() == cpu.rng.random()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_layer_refuses_non_floating_and_casts_floats(rng, dtype):
    import cupy

    lstm = cr.LSTM(3, 4, dtype=dtype, device="cuda", seed=22)
    x = rng.standard_normal((5, 2, 3))
    for bad, name in ((cupy.asarray(x.astype(np.int32)), "int32"), (x > 0, "bool")):
        with pytest.raises(ValueError, match=f"^x: expected a floating-point array, got dtype "
                                             f"{name}$"):
            lstm(bad)
    y64, _ = lstm(x)  # float64 NumPy data into the layer's dtype
    y, (h_n, _) = lstm(cupy.asarray(x.astype(np.float32)))
    assert y.dtype == y64.dtype == lstm.parameters()["weight_hh_l0"].dtype
    lstm(y[:, :, :3], (h_n, None))  # the layer's own storage arrays (bfloat16 bits) are taken
    with pytest.raises(ValueError, match=r"^state_dict\['bias_hh_l0'\]: expected finite"):
        sd = lstm.state_dict()
        sd["bias_hh_l0"] = cupy.full(sd["bias_hh_l0"].shape, np.nan, np.float32)
        lstm.load_state_dict(sd)
    lstm.load_state_dict(lstm.state_dict())  # its own state_dict, whatever the storage


def test_cuda_forward_larger_than_free_memory_raises_before_allocating():
    import cupy

    lstm = cr.LSTM(1, 64, device="cuda", seed=23)
    x = np.broadcast_to(np.float32(0.5), (10**5, 10**6, 1))
    free, _ = cupy.cuda.runtime.memGetInfo()
    with pytest.raises(MemoryError, match=r"\.forward with T=100000, B=1000000: needs about "
                                          r".* are available$"):
        lstm(x)
    assert cupy.cuda.runtime.memGetInfo()[0] == free
