"""The Trainer: it learns, truncated BPTT computes what its definition says, the NaN guard
stops cleanly, and the schedule and config are checked."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cuda_rnn.checkpoint import load_checkpoint
from cuda_rnn.losses import sequence_loss
from cuda_rnn.model import SequenceModel
from cuda_rnn.optim import SGD, Adam
from cuda_rnn.tasks import AddingProblem, Batch, CopyTask
from cuda_rnn.train import TrainConfig, Trainer, TrainingDiverged, lr_schedule, tbptt_windows


class RecordingSGD(SGD):
    """SGD that keeps a copy of every gradient it applies."""

    def __init__(self, params, lr):
        super().__init__(params, lr)
        self.seen: list[dict[str, np.ndarray]] = []

    def step(self, grads):
        self.seen.append({k: g.copy() for k, g in grads.items()})
        super().step(grads)


def _model(cell: str, task, seed: int, hidden: int = 6, dtype: str = "float64") -> SequenceModel:
    return SequenceModel(cell, task.input_size, hidden, task.output_size,
                         input_kind=task.input_kind, dtype=dtype, device="cpu", seed=seed)


def test_training_reduces_the_adding_loss(rng: np.random.Generator) -> None:
    task = AddingProblem(8, test_size=256, test_seed=int(rng.integers(1 << 30)))
    model = _model("lstm", task, int(rng.integers(1 << 30)), hidden=16, dtype="float32")
    trainer = Trainer(model, task, Adam(model.parameters(), 1e-2),
                      TrainConfig(steps=300, batch_size=32, clip=1.0),
                      seed=int(rng.integers(1 << 30)))
    before = trainer.evaluate()
    history = trainer.fit()
    assert before > 0.1
    assert history.eval_loss[-1] < 0.25 * task.baseline
    assert np.mean(history.loss[-20:]) < 0.5 * np.mean(history.loss[:20])
    assert len(history.loss) == len(history.grad_norm) == 300 and history.eval_step == [300]


def test_tbptt_windows_hand_computed() -> None:
    assert tbptt_windows(10, 10, 10) == [(0, 0, 10)]
    assert tbptt_windows(12, 4, 6) == [(0, 0, 4), (2, 4, 8), (6, 8, 12)]
    assert tbptt_windows(10, 5, 3) == [(2, 2, 5), (7, 7, 10)]
    assert tbptt_windows(7, 3, 3) == [(0, 0, 3), (3, 3, 6), (6, 6, 7)]
    assert tbptt_windows(7, 5, 3) == [(2, 2, 5)]
    assert tbptt_windows(9, 4, 6) == [(0, 0, 4), (2, 4, 8), (6, 8, 9)]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_truncated_bptt_with_k1_eq_k2_eq_T_gives_full_bptt_gradients(
    rng: np.random.Generator, cell: str
) -> None:
    task = CopyTask(3)
    seed = int(rng.integers(1 << 30))
    batch = task.sample(rng, 5)
    T = task.seq_len
    grads = []
    for tbptt in (None, (T, T)):
        model = _model(cell, task, seed)
        opt = RecordingSGD(model.parameters(), 0.1)
        Trainer(model, task, opt, TrainConfig(steps=1, batch_size=5, clip=None, tbptt=tbptt)
                ).train_batch(batch)
        grads.append(opt.seen)
    assert len(grads[0]) == len(grads[1]) == 1
    for name, g in grads[0][0].items():
        assert np.array_equal(g, grads[1][0][name]), name
        assert np.abs(g).sum() > 0


def _reference_grads(model: SequenceModel, batch: Batch, state, w: int, s: int, e: int,
                     kind: str) -> dict[str, np.ndarray]:
    """Gradient of the loss on steps [s, e), backpropagated through [w, e) from ``state``."""
    out, _ = model.forward(batch.inputs[w:e], state)
    mask = batch.mask[w:e].copy()
    mask[: s - w] = 0
    _, dout = sequence_loss(kind, out, batch.targets[w:e], mask)
    model.zero_grad()
    model.backward(dout)
    return {k: g.copy() for k, g in model.grads.items()}


def _apply(model: SequenceModel, grads: dict[str, np.ndarray], lr: float) -> None:
    for k, p in model.parameters().items():
        p -= lr * grads[k]


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for k in a:
        assert np.allclose(a[k], b[k], rtol=1e-10, atol=1e-13), k


def test_truncated_bptt_k2_greater_than_k1_follows_its_definition(
    rng: np.random.Generator
) -> None:
    task = CopyTask(2)  # T = 22: windows (0,0,4) (2,4,8) (6,8,12) ... with k1 = 4, k2 = 6
    seed, lr = int(rng.integers(1 << 30)), 0.05
    batch = task.sample(rng, 3)
    model = _model("lstm", task, seed)
    opt = RecordingSGD(model.parameters(), lr)
    Trainer(model, task, opt, TrainConfig(steps=1, batch_size=3, clip=None, tbptt=(4, 6))
            ).train_batch(batch)
    ref = _model("lstm", task, seed)
    g1 = _reference_grads(ref, batch, None, 0, 0, 4, "xent")
    _, state2 = ref.forward(batch.inputs[0:2])  # the state saved at step 2, initial weights
    _apply(ref, g1, lr)
    g2 = _reference_grads(ref, batch, state2, 2, 4, 8, "xent")
    _, state6 = ref.forward(batch.inputs[2:6], state2)  # saved with the weights of update 2
    _apply(ref, g2, lr)
    g3 = _reference_grads(ref, batch, state6, 6, 8, 12, "xent")
    assert len(opt.seen) == 6
    for ours, theirs in zip(opt.seen, (g1, g2, g3)):
        _assert_same(ours, theirs)


def test_truncated_bptt_k2_less_than_k1_follows_its_definition(rng: np.random.Generator) -> None:
    task = CopyTask(1)  # T = 21: windows (2,2,5) (7,7,10) ... with k1 = 5, k2 = 3
    seed, lr = int(rng.integers(1 << 30)), 0.05
    batch = task.sample(rng, 3)
    model = _model("gru", task, seed)
    opt = RecordingSGD(model.parameters(), lr)
    Trainer(model, task, opt, TrainConfig(steps=1, batch_size=3, clip=None, tbptt=(5, 3))
            ).train_batch(batch)
    ref = _model("gru", task, seed)
    _, state2 = ref.forward(batch.inputs[0:2])
    g1 = _reference_grads(ref, batch, state2, 2, 2, 5, "xent")
    _, state5 = ref.forward(batch.inputs[2:5], state2)  # carried from the window's forward
    _apply(ref, g1, lr)
    _, state7 = ref.forward(batch.inputs[5:7], state5)  # forward only, updated weights
    g2 = _reference_grads(ref, batch, state7, 7, 7, 10, "xent")
    assert len(opt.seen) == 4  # the last chunk, [20, 21), ends before its window starts
    _assert_same(opt.seen[0], g1)
    _assert_same(opt.seen[1], g2)


def test_tbptt_skips_windows_without_scored_steps(rng: np.random.Generator) -> None:
    task = AddingProblem(12)
    model = _model("rnn-tanh", task, int(rng.integers(1 << 30)))
    opt = RecordingSGD(model.parameters(), 0.1)
    trainer = Trainer(model, task, opt, TrainConfig(steps=1, batch_size=4, tbptt=(4, 4)))
    loss, norm = trainer.train_batch(task.sample(rng, 4))
    assert len(opt.seen) == 1  # only the last chunk holds the adding target
    assert loss > 0 and norm > 0


def test_tbptt_that_scores_nothing_is_an_error(rng: np.random.Generator) -> None:
    task = AddingProblem(12)  # scored at step 11 only; (5, 3) windows end at steps 5 and 10
    model = _model("gru", task, int(rng.integers(1 << 30)))
    trainer = Trainer(model, task, SGD(model.parameters(), 0.1),
                      TrainConfig(steps=1, batch_size=2, tbptt=(5, 3)))
    with pytest.raises(ValueError, match=r"tbptt: expected windows that score at least one"):
        trainer.train_batch(task.sample(rng, 2))


def test_evaluate_is_the_mean_loss_on_the_test_set(rng: np.random.Generator) -> None:
    task = AddingProblem(6, test_size=50, test_seed=int(rng.integers(1 << 30)))
    model = _model("gru", task, int(rng.integers(1 << 30)))
    trainer = Trainer(model, task, SGD(model.parameters(), 0.1),
                      TrainConfig(steps=1, batch_size=4, eval_batch=16))
    test = task.test_set()
    out, _ = model.forward(test.inputs)
    expected, _ = sequence_loss("mse", out, test.targets, test.mask)
    assert trainer.evaluate() == pytest.approx(expected, rel=1e-12)


def test_nan_guard_stops_before_the_update_and_keeps_the_checkpoint(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    task = AddingProblem(6, test_size=20)
    model = _model("lstm", task, int(rng.integers(1 << 30)))
    path = tmp_path / "ckpt.npz"
    trainer = Trainer(model, task, Adam(model.parameters(), 1e-2),
                      TrainConfig(steps=10, batch_size=4, checkpoint_every=1),
                      seed=int(rng.integers(1 << 30)), checkpoint_path=path)
    trainer.fit(stop_at=3)
    good = load_checkpoint(path)
    assert good.meta["step"] == 3
    model.parameters()["rnn.weight_hh_l0"][0, 0] = np.nan
    before = {k: v.copy() for k, v in model.parameters().items()}
    with pytest.raises(TrainingDiverged, match=r"diverged at step 4: loss nan.*last good "
                                               r"checkpoint is .*ckpt\.npz"):
        trainer.fit()
    assert trainer.step == 3 and len(trainer.history.loss) == 3
    for k, v in model.parameters().items():
        assert np.array_equal(v, before[k], equal_nan=True), k
    kept = load_checkpoint(path)
    assert kept.meta["step"] == 3
    for k, v in good.params.items():
        assert np.array_equal(kept.params[k], v)


def test_save_refuses_non_finite_parameters(tmp_path: Path, rng: np.random.Generator) -> None:
    task = AddingProblem(4, test_size=8)
    model = _model("gru", task, int(rng.integers(1 << 30)))
    path = tmp_path / "ckpt.npz"
    trainer = Trainer(model, task, SGD(model.parameters(), 0.1),
                      TrainConfig(steps=2, batch_size=2), checkpoint_path=path)
    trainer.save()
    model.parameters()["head.bias"][0] = np.inf
    with pytest.raises(TrainingDiverged, match="parameter 'head.bias' is not finite"):
        trainer.save()
    assert np.isfinite(load_checkpoint(path).params["head.bias"]).all()


def test_lr_schedule_values() -> None:
    const = lr_schedule("constant", 0.1, 100, warmup=4)
    assert [const(s) for s in (0, 3, 4, 99)] == pytest.approx([0.025, 0.1, 0.1, 0.1])
    cos = lr_schedule("cosine", 0.2, 100)
    assert cos(0) == pytest.approx(0.2) and cos(50) == pytest.approx(0.1)
    assert cos(100) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="schedule: expected one of"):
        lr_schedule("linear", 0.1, 10)


def test_fit_applies_the_schedule(rng: np.random.Generator) -> None:
    task = AddingProblem(4, test_size=8)
    model = _model("rnn-relu", task, int(rng.integers(1 << 30)))
    trainer = Trainer(model, task, SGD(model.parameters(), 0.4),
                      TrainConfig(steps=4, batch_size=2, schedule="cosine"))
    history = trainer.fit()
    expected = [0.4 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert history.lr == pytest.approx(expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0, batch_size=2), "steps: expected a positive integer, got 0"),
    (dict(steps=1, batch_size=2, tbptt=(0, 3)), "tbptt k1: expected a positive integer"),
    (dict(steps=1, batch_size=2, eval_every=-1), "eval_every: expected an integer >= 0"),
    (dict(steps=1, batch_size=2, schedule="step"), "schedule: expected one of"),
])
def test_train_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_training_matches_cpu(rng: np.random.Generator, cell: str) -> None:
    task = CopyTask(4, test_size=16)
    seed = int(rng.integers(1 << 30))
    results = []
    for device in ("cpu", "cuda"):
        model = SequenceModel(cell, task.input_size, 8, task.output_size, input_kind="embedding",
                              dtype="float64", device=device, seed=seed)
        trainer = Trainer(model, task, Adam(model.parameters(), 1e-2),
                          TrainConfig(steps=4, batch_size=8, tbptt=(6, 9)), seed=seed)
        history = trainer.fit()
        results.append((history.loss, history.eval_loss, model.state_dict()))
    (cpu_loss, cpu_eval, cpu_params), (gpu_loss, gpu_eval, gpu_params) = results
    assert np.allclose(gpu_loss, cpu_loss, rtol=1e-9)
    assert np.allclose(gpu_eval, cpu_eval, rtol=1e-9)
    for k, v in cpu_params.items():
        assert np.allclose(gpu_params[k], v, rtol=1e-8, atol=1e-11), k


def test_progress_bar_shows_the_loss_and_gradient_norm(capsys: pytest.CaptureFixture,
                                                       rng: np.random.Generator) -> None:
    pytest.importorskip("tqdm")
    task = AddingProblem(4, test_size=8)
    model = _model("lstm", task, int(rng.integers(1 << 30)))
    Trainer(model, task, SGD(model.parameters(), 0.1), TrainConfig(steps=5, batch_size=2),
            progress=True).fit()
    err = capsys.readouterr().err
    assert "lstm" in err and "5/5" in err and "loss=" in err and "gnorm=" in err
