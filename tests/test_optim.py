"""Optimizer steps and gradient clipping against hand-computed values (and torch.optim)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cuda_rnn.optim import SGD, Adam, clip_grad_norm, clip_grad_value, global_norm


def test_sgd_step_hand_computed() -> None:
    p = {"w": np.array([1.0, -2.0])}
    SGD(p, lr=0.5).step({"w": np.array([0.2, 0.4])})
    assert np.allclose(p["w"], [0.9, -2.2])


def test_sgd_momentum_two_steps_hand_computed() -> None:
    p = {"w": np.array([1.0])}
    opt = SGD(p, lr=0.1, momentum=0.9)
    opt.step({"w": np.array([2.0])})  # v = 2, p = 1 - 0.2
    assert p["w"][0] == pytest.approx(0.8)
    opt.step({"w": np.array([1.0])})  # v = 0.9 * 2 + 1 = 2.8, p = 0.8 - 0.28
    assert p["w"][0] == pytest.approx(0.52)


def test_adam_two_steps_hand_computed() -> None:
    p = {"w": np.array([1.0])}
    opt = Adam(p, lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    opt.step({"w": np.array([2.0])})
    # m_hat = 2, v_hat = 4 after bias correction: the first step is lr * sign(g)
    p1 = 1.0 - 0.1 * 2 / (2 + 1e-8)
    assert p["w"][0] == pytest.approx(p1, rel=1e-15)
    opt.step({"w": np.array([-1.0])})
    m = 0.9 * 0.2 + 0.1 * -1.0
    v = 0.999 * 0.004 + 0.001 * 1.0
    m_hat, v_hat = m / (1 - 0.9**2), v / (1 - 0.999**2)
    assert p["w"][0] == pytest.approx(p1 - 0.1 * m_hat / (math.sqrt(v_hat) + 1e-8), rel=1e-12)


def test_adam_and_sgd_match_torch(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    for ours, theirs in [
        (lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7),
         lambda t: torch.optim.Adam([t], lr=0.01, betas=(0.8, 0.99), eps=1e-7)),
        (lambda p: SGD(p, lr=0.05, momentum=0.7),
         lambda t: torch.optim.SGD([t], lr=0.05, momentum=0.7)),
    ]:
        w0 = rng.standard_normal((3, 4))
        p = {"w": w0.copy()}
        t = torch.tensor(w0.copy(), requires_grad=True)
        opt, topt = ours(p), theirs(t)
        for _ in range(5):
            g = rng.standard_normal((3, 4))
            opt.step({"w": g.copy()})
            t.grad = torch.tensor(g)
            topt.step()
        assert np.allclose(p["w"], t.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_optimizer_state_round_trip_continues_identically(rng: np.random.Generator) -> None:
    w0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(4)]
    a = {"w": w0.copy()}
    opt_a = Adam(a, lr=0.02)
    for g in grads:
        opt_a.step({"w": g.copy()})
    b = {"w": w0.copy()}
    opt_b = Adam(b, lr=0.02)
    for g in grads[:2]:
        opt_b.step({"w": g.copy()})
    c = {"w": b["w"].copy()}
    opt_c = Adam(c, lr=0.5)
    opt_c.load_state_dict(opt_b.state_dict())
    assert opt_c.lr == 0.02 and opt_c.steps == 2
    for g in grads[2:]:
        opt_c.step({"w": g.copy()})
    assert np.array_equal(c["w"], a["w"])


def test_clip_grad_norm_hand_computed() -> None:
    grads = {"a": np.array([3.0]), "b": np.array([[4.0]])}
    assert clip_grad_norm(grads, 1.0) == pytest.approx(5.0)
    assert np.allclose(grads["a"], [0.6]) and np.allclose(grads["b"], [[0.8]])
    assert global_norm(grads) == pytest.approx(1.0)


def test_clip_grad_norm_leaves_small_and_nonfinite_gradients(rng: np.random.Generator) -> None:
    g = rng.standard_normal(5)
    grads = {"a": g.copy()}
    assert clip_grad_norm(grads, 1e6) == pytest.approx(np.linalg.norm(g))
    assert np.array_equal(grads["a"], g)
    bad = {"a": np.array([np.inf, 1.0])}
    assert math.isinf(clip_grad_norm(bad, 1.0))
    assert bad["a"][1] == 1.0


def test_clip_grad_value_hand_computed() -> None:
    grads = {"a": np.array([-3.0, 0.5, 2.0])}
    clip_grad_value(grads, 1.0)
    assert np.array_equal(grads["a"], [-1.0, 0.5, 1.0])


@pytest.mark.parametrize("make, message", [
    (lambda p: SGD(p, lr=0.0), "lr: expected a finite number > 0, got 0.0"),
    (lambda p: SGD(p, lr=0.1, momentum=1.5), r"momentum: expected a number in \[0, 1\)"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), r"betas\[1\]: expected a number in \[0, 1\)"),
    (lambda p: Adam({}, lr=0.1), "params: expected a non-empty dict"),
])
def test_optimizer_rejects_bad_arguments(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make({"w": np.ones(2)})


def test_step_rejects_mismatched_gradient_keys(rng: np.random.Generator) -> None:
    opt = SGD({"w": rng.standard_normal(2)}, lr=0.1)
    with pytest.raises(ValueError, match=r"grads: expected keys \['w'\], got \['v'\]"):
        opt.step({"v": rng.standard_normal(2)})


def test_clip_rejects_nonpositive_limits(rng: np.random.Generator) -> None:
    grads = {"a": rng.standard_normal(2)}
    with pytest.raises(ValueError, match="max_norm: expected a number > 0, got 0"):
        clip_grad_norm(grads, 0)
    with pytest.raises(ValueError, match="clip_value: expected a number > 0, got -1"):
        clip_grad_value(grads, -1)


@pytest.mark.gpu
def test_optimizers_and_clipping_on_cupy_match_numpy(rng: np.random.Generator) -> None:
    import cupy

    w0 = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) * 5 for _ in range(3)]
    for make in (lambda p: Adam(p, lr=0.01), lambda p: SGD(p, lr=0.05, momentum=0.9)):
        host, dev = {"w": w0.copy()}, {"w": cupy.asarray(w0)}
        opt_h, opt_d = make(host), make(dev)
        for g in grads:
            gh, gd = {"w": g.copy()}, {"w": cupy.asarray(g)}
            assert clip_grad_norm(gd, 1.0) == pytest.approx(clip_grad_norm(gh, 1.0))
            clip_grad_value(gh, 0.3)
            clip_grad_value(gd, 0.3)
            opt_h.step(gh)
            opt_d.step(gd)
        assert isinstance(dev["w"], cupy.ndarray)
        assert np.allclose(dev["w"].get(), host["w"], rtol=1e-12)
        restored = make({"w": cupy.asarray(w0)})
        restored.load_state_dict(opt_d.state_dict())
        assert restored.steps == 3
