"""Memory: building a layer costs its parameters (drawn chunk by chunk, the same values as one
float64 draw), and a forward too large for the machine is a MemoryError before it allocates."""
from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

import cuda_rnn as cr
from cuda_rnn import init, memory
from cuda_rnn.model import SequenceModel


def _one_float64_draw(seed, shapes, bound, dtype):
    """The weights as drawn before chunking: each whole array in float64, then cast."""
    rng = np.random.default_rng(seed)
    return {k: rng.uniform(-bound, bound, s).astype(dtype) for k, s in shapes.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_draw_gives_the_values_of_one_float64_draw(dtype):
    # weight_hh_l0 has 2400 * 600 elements: more than one chunk, not a multiple of it.
    lstm = cr.LSTM(3, 600, num_layers=2, dtype=dtype, device="cpu", seed=11)
    assert lstm.parameters()["weight_hh_l0"].size > init.CHUNK
    shapes = {k: v.shape for k, v in lstm.state_dict().items()}
    want = _one_float64_draw(11, shapes, 1 / np.sqrt(600), dtype)
    got = lstm.state_dict()
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    # the generator is left where one draw per parameter leaves it (dropout masks follow it)
    rng = np.random.default_rng(11)
    for s in shapes.values():
        rng.uniform(size=s)
    assert lstm.rng.random() == rng.random()


def test_linear_head_draw_unchanged():
    model = SequenceModel("rnn-tanh", 5, 7, 3, device="cpu", seed=12)
    seeds = np.random.SeedSequence(12).generate_state(3)
    rng = np.random.default_rng(int(seeds[1]))
    bound = 1 / np.sqrt(7)
    np.testing.assert_array_equal(model.head.parameters()["weight"],
                                  rng.uniform(-bound, bound, (3, 7)).astype(np.float32))
    np.testing.assert_array_equal(model.head.parameters()["bias"],
                                  rng.uniform(-bound, bound, 3).astype(np.float32))


def test_building_a_large_layer_costs_about_its_parameters():
    tracemalloc.start()
    try:
        lstm = cr.LSTM(4, 1500, dtype="float32", device="cpu", seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    params = sum(v.nbytes for v in lstm.parameters().values())
    # The parameters and their gradient buffers (zeros: traced here, though the OS maps no
    # pages for them until a backward), plus a chunk or two. A whole float64 draw and its
    # cast would peak at 3x the parameters (108 MB here) before the gradients are made.
    assert 2 * params <= peak < 2 * params + 2 * init.CHUNK * 8


def test_gradients_take_no_memory_until_a_backward(rng):
    lstm = cr.LSTM(2, 8, device="cpu", seed=0)
    assert all(not g.any() for g in lstm.grads.values())
    x = rng.standard_normal((4, 3, 2))
    y, _ = lstm(x)
    lstm.backward(rng.standard_normal(y.shape))
    assert all(g.any() for g in lstm.grads.values())


def test_forward_bytes_counts_every_saved_buffer():
    # LSTM, T=10, B=2, I=3, H=5, 2 layers, 2 directions, float32
    G, H = 20, 5
    per_row = 2 * 2 * (G + H) + 2 * 2 * H + 3 + G
    want = 4 * (10 * 2 * per_row + 2 * 2 * 2 * H * 11 * 2 + 2 * G * H)
    assert memory.forward_bytes(10, 2, 3, 5, 4, 2, 2, 2, 4) == want
    assert memory.forward_bytes(10, 2, 3, 5, 4, 2, 2, 2, 8) == 2 * want


@pytest.mark.parametrize("config", [dict(), dict(num_layers=2, bidirectional=True),
                                    dict(layer_norm=True), dict(zoneout=0.1, zoneout_cell=0.1),
                                    dict(proj_size=64, layer_norm=True, num_layers=2)],
                         ids=["plain", "stacked", "layer-norm", "zoneout", "proj-layer-norm"])
@pytest.mark.parametrize("shape", [(30, 16, 16, 128), (10, 4, 8, 384)])
def test_forward_bytes_follows_what_an_lstm_forward_allocates(rng, config, shape):
    T, B, I, H = shape
    lstm = cr.LSTM(I, H, device="cpu", seed=0, **config)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    L, D = lstm.num_layers, lstm.num_directions
    estimate = memory.forward_bytes(T, B, I, H, 4, 2, L, D, 4,
                                    **memory.variant_workspace(lstm.spec, H))
    tracemalloc.start()
    try:
        lstm(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 0.95 * peak <= estimate <= 1.3 * peak


def test_check_fits_names_both_sizes():
    memory.check_fits(10, 10, "fits")
    with pytest.raises(MemoryError, match=r"^LSTM\.forward: needs about 2\.00 GiB \(2147483648 "
                                          r"bytes\) of workspace, 1\.00 GiB \(1073741824 bytes\)"
                                          r" are available$"):
        memory.check_fits(2 << 30, 1 << 30, "LSTM.forward")


def test_host_available_bytes_is_plausible():
    available = memory.host_available_bytes()
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available <= total


@pytest.mark.parametrize("batch_first", [False, True])
def test_absurd_forward_raises_before_allocating(batch_first):
    lstm = cr.LSTM(1, 64, num_layers=2, batch_first=batch_first, device="cpu", seed=0)
    shape = (10**5, 10**6, 1)  # a broadcast view: one element in memory, 10^11 in the shape
    x = np.broadcast_to(np.float32(0.5), shape)
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"LSTM\(1, 64, .*\)\.forward with T=100000, "
                                              r"B=1000000: needs about .* GiB"):
            lstm(x.transpose(1, 0, 2) if batch_first else x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_forward_checks_against_available_memory(monkeypatch, rng):
    gru = cr.GRU(3, 32, num_layers=2, device="cpu", seed=0)
    x = rng.standard_normal((20, 10, 3))
    needed = memory.forward_bytes(20, 10, 3, 32, 3, 1, 2, 1, 4)
    monkeypatch.setattr(cr.backend, "host_available_bytes", lambda: needed - 1)
    y, _ = gru(x)  # small forwards are not checked: no query of the machine
    monkeypatch.setattr(memory, "CHECK_ABOVE_BYTES", 0)
    with pytest.raises(MemoryError, match=rf"T=20, B=10: needs about 0\.00 GiB \({needed} "
                                          rf"bytes\) of workspace, .* \({needed - 1} bytes\)"):
        gru(x)
    monkeypatch.setattr(cr.backend, "host_available_bytes", lambda: needed)
    np.testing.assert_array_equal(gru(x)[0], y)
