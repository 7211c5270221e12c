"""Losses: hand-computed values, finite differences, masks, stability, and PyTorch agreement."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cuda_rnn.losses import mse, sequence_loss, softmax_cross_entropy


def _numeric_grad(f, a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    g = np.empty_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        up = f(a)
        flat[i] = orig - eps
        down = f(a)
        flat[i] = orig
        gflat[i] = (up - down) / (2 * eps)
    return g


def test_cross_entropy_hand_computed() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    targets = np.array([2, 0])
    loss, grad = softmax_cross_entropy(logits, targets)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    expected = 0.5 * (-math.log(p[2]) + math.log(3.0))
    assert loss == pytest.approx(expected, rel=1e-12)
    assert np.allclose(grad[0], 0.5 * (p - [0, 0, 1]))
    assert np.allclose(grad[1], 0.5 * (np.full(3, 1 / 3) - [1, 0, 0]))


def test_cross_entropy_gradient_matches_finite_differences(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((4, 3, 5))
    targets = rng.integers(0, 5, (4, 3))
    mask = (rng.random((4, 3)) < 0.6).astype(np.float64)
    mask[0, 0] = 1.0
    _, grad = softmax_cross_entropy(logits, targets, mask)
    numeric = _numeric_grad(lambda a: softmax_cross_entropy(a, targets, mask)[0], logits.copy())
    assert np.allclose(grad, numeric, atol=1e-8)


def test_cross_entropy_mask_is_a_mean_over_counted_positions(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((6, 2, 4))
    targets = rng.integers(0, 4, (6, 2))
    mask = np.zeros((6, 2))
    mask[[1, 4], [0, 1]] = 1.0
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    picked = [softmax_cross_entropy(logits[t, b][None], targets[t, b][None])[0]
              for t, b in [(1, 0), (4, 1)]]
    assert loss == pytest.approx(np.mean(picked), rel=1e-12)
    assert np.all(grad[mask == 0] == 0)
    assert np.abs(grad[mask == 1]).sum() > 0


def test_cross_entropy_is_stable_for_huge_logits(rng: np.random.Generator) -> None:
    logits = rng.standard_normal((3, 4)) * 1e4
    targets = rng.integers(0, 4, 3)
    loss, grad = softmax_cross_entropy(logits, targets)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    shifted_loss, _ = softmax_cross_entropy(logits - logits.max(axis=1, keepdims=True) + 5.0,
                                            targets)
    assert loss == pytest.approx(shifted_loss, rel=1e-9)


def test_cross_entropy_matches_torch(rng: np.random.Generator) -> None:
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((5, 3, 7))
    targets = rng.integers(0, 7, (5, 3))
    loss, grad = softmax_cross_entropy(logits, targets)
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(t.reshape(-1, 7), torch.tensor(targets).reshape(-1))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert np.allclose(grad, t.grad.numpy(), atol=1e-14)


@pytest.mark.parametrize(
    "targets, message",
    [(np.array([[0, 1]]), "targets: expected shape"),
     (np.array([0.0, 1.0, 2.0]), "integer dtype"),
     (np.array([0, 4, 1]), r"classes in \[0, 4\)")],
)
def test_cross_entropy_rejects_bad_targets(rng: np.random.Generator, targets: np.ndarray,
                                           message: str) -> None:
    with pytest.raises(ValueError, match=message):
        softmax_cross_entropy(rng.standard_normal((3, 4)), targets)


def test_cross_entropy_rejects_empty_mask(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="mask: expected at least one nonzero"):
        softmax_cross_entropy(rng.standard_normal((3, 4)), np.array([0, 1, 2]), np.zeros(3))


def test_mse_hand_computed() -> None:
    loss, grad = mse(np.array([1.0, 2.0]), np.array([0.0, 4.0]))
    assert loss == pytest.approx(2.5)
    assert np.allclose(grad, [1.0, -2.0])


def test_mse_with_mask_hand_computed() -> None:
    pred = np.array([[[1.0, 3.0]], [[2.0, 2.0]]])  # (T=2, B=1, O=2)
    target = np.array([[[0.0, 0.0]], [[1.0, 4.0]]])
    loss, grad = mse(pred, target, mask=np.array([[0.0], [1.0]]))
    assert loss == pytest.approx((1.0 + 4.0) / 2)
    assert np.allclose(grad, [[[0.0, 0.0]], [[1.0, -2.0]]])


def test_mse_gradient_matches_finite_differences(rng: np.random.Generator) -> None:
    pred = rng.standard_normal((3, 2, 2))
    target = rng.standard_normal((3, 2, 2))
    mask = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    _, grad = mse(pred, target, mask)
    numeric = _numeric_grad(lambda a: mse(a, target, mask)[0], pred.copy())
    assert np.allclose(grad, numeric, atol=1e-8)


def test_mse_rejects_shape_mismatch(rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match=r"target: expected shape \(3, 2\), got \(2, 3\)"):
        mse(rng.standard_normal((3, 2)), rng.standard_normal((2, 3)))


def test_sequence_loss_dispatches_and_rejects_unknown_kind(rng: np.random.Generator) -> None:
    pred, target = rng.standard_normal((2, 3, 1)), rng.standard_normal((2, 3, 1))
    assert sequence_loss("mse", pred, target)[0] == mse(pred, target)[0]
    with pytest.raises(ValueError, match="kind: expected one of"):
        sequence_loss("hinge", pred, target)


@pytest.mark.gpu
def test_losses_on_cupy_arrays_match_numpy(rng: np.random.Generator) -> None:
    import cupy

    logits = rng.standard_normal((5, 4, 6))
    targets = rng.integers(0, 6, (5, 4))
    mask = (rng.random((5, 4)) < 0.7).astype(np.float64)
    mask[0, 0] = 1.0
    loss, grad = softmax_cross_entropy(logits, targets, mask)
    gloss, ggrad = softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(targets),
                                         cupy.asarray(mask))
    assert isinstance(ggrad, cupy.ndarray)
    assert gloss == pytest.approx(loss, rel=1e-12)
    assert np.allclose(ggrad.get(), grad, atol=1e-14)
    pred, target = rng.standard_normal((5, 4, 2)), rng.standard_normal((5, 4, 2))
    mloss, mgrad = mse(pred, target, mask)
    gmloss, gmgrad = mse(cupy.asarray(pred), cupy.asarray(target), cupy.asarray(mask))
    assert gmloss == pytest.approx(mloss, rel=1e-12)
    assert np.allclose(gmgrad.get(), mgrad, atol=1e-14)
