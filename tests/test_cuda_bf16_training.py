"""bfloat16 storage through the whole training loop: SequenceModel + Trainer on device="cuda".

A bfloat16 model and a float32 model start from the same (bfloat16-representable) weights and
train on the same batches. Every update of a parameter or a gradient must go through the CUDA
backend's storage arithmetic (float32, rounded once): plain ``+=`` / ``*=`` on bfloat16 storage
(raw uint16 bits before CuPy 14) would add bit patterns as integers.
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

#: Loss of each step, bfloat16 against float32: relative difference.
LOSS_TOLERANCE = 1e-2
#: ||(p_bf16 - p0) - (p_f32 - p0)|| / ||p_f32 - p0|| over all parameters after training.
UPDATE_TOLERANCE = 0.1


def _host32(a: object) -> np.ndarray:
    from cuda_rnn.cuda.dtypes import to_float32

    return to_float32(a).get().astype(np.float64)


def _train(cell: str, input_kind: str, dtype: str, optimizer: str, init: dict | None,
           seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[float]]:
    from cuda_rnn import Adam, SGD, SequenceModel, Trainer, TrainConfig
    from cuda_rnn.tasks import CopyTask

    task = CopyTask(seq_len=3, test_size=4)
    model = SequenceModel(cell, task.input_size, 12, task.output_size, num_layers=2,
                          input_kind=input_kind, dtype=dtype, device="cuda", seed=seed)
    if init is not None:
        model.load_state_dict(init)
    start = {k: _host32(v) for k, v in model.parameters().items()}
    opt = (Adam(model.parameters(), lr=1e-2) if optimizer == "adam"
           else SGD(model.parameters(), lr=0.5, momentum=0.5))
    history = Trainer(model, task, opt, TrainConfig(steps=6, batch_size=8, clip=0.5,
                                                  clip_value=0.02),
                      seed=seed).fit()
    end = {k: _host32(v) for k, v in model.parameters().items()}
    return start, end, list(history.loss)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("cell,input_kind", [("lstm", "embedding"), ("gru", "onehot")])
def test_bfloat16_training_follows_float32(rng: np.random.Generator, cell: str,
                                           input_kind: str, optimizer: str) -> None:
    seed = int(rng.integers(1 << 30))
    start, bf_end, bf_loss = _train(cell, input_kind, "bfloat16", optimizer, None, seed)
    _, f32_end, f32_loss = _train(cell, input_kind, "float32", optimizer, start, seed)
    assert np.all(np.isfinite(bf_loss)) and len(bf_loss) == 6
    np.testing.assert_allclose(bf_loss, f32_loss, rtol=LOSS_TOLERANCE)
    assert f32_loss[-1] < f32_loss[0]  # the comparison is over steps that learn
    moved = np.concatenate([(f32_end[k] - start[k]).ravel() for k in start])
    error = np.concatenate([(bf_end[k] - f32_end[k]).ravel() for k in start])
    assert np.linalg.norm(moved) > 0
    assert np.linalg.norm(error) <= UPDATE_TOLERANCE * np.linalg.norm(moved)


def test_storage_arithmetic_rounds_bfloat16_once(rng: np.random.Generator) -> None:
    from cuda_rnn.backend import for_device
    from cuda_rnn.cuda.dtypes import bfloat16_bits, bfloat16_to_float32, cast

    be = for_device("cuda")
    a32 = bfloat16_to_float32(bfloat16_bits(rng.standard_normal(257).astype(np.float32)))
    b32 = bfloat16_to_float32(bfloat16_bits(rng.standard_normal(257).astype(np.float32)))
    a, b = cast(a32, "bfloat16"), cast(b32, "bfloat16")
    want = {
        "add": bfloat16_to_float32(bfloat16_bits(a32 + b32)),
        "multiply": bfloat16_to_float32(bfloat16_bits(a32 * b32)),
        "scale": bfloat16_to_float32(bfloat16_bits(a32 * np.float32(0.3))),
        "clip": bfloat16_to_float32(bfloat16_bits(np.clip(a32, -0.5, 0.5))),
    }
    np.testing.assert_array_equal(_host32(be.add(a, b)), want["add"])
    np.testing.assert_array_equal(_host32(be.multiply(a, b)), want["multiply"])
    target = a.copy()
    be.add_into(target, b)
    np.testing.assert_array_equal(_host32(target), want["add"])
    target = a.copy()
    be.scale(target, 0.3)
    np.testing.assert_array_equal(_host32(target), want["scale"])
    target = a.copy()
    be.clip(target, -0.5, 0.5)
    np.testing.assert_array_equal(_host32(target), want["clip"])
