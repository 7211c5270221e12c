"""Tasks follow their published definitions, and their baselines are what they claim."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cuda_rnn.losses import sequence_loss
from cuda_rnn.model import SequenceModel
from cuda_rnn.experiments import sample_text
from cuda_rnn.tasks import AddingProblem, CharLM, CopyTask, make_task


def test_adding_problem_structure(rng: np.random.Generator) -> None:
    task = AddingProblem(21)
    b = task.sample(rng, 50)
    assert b.inputs.shape == (21, 50, 2) and b.targets.shape == (21, 50, 1)
    values, markers = b.inputs[..., 0], b.inputs[..., 1]
    assert values.min() >= 0 and values.max() <= 1
    assert np.all(markers[:10].sum(axis=0) == 1) and np.all(markers[10:].sum(axis=0) == 1)
    assert np.allclose(b.targets[-1, :, 0], (values * markers).sum(axis=0))
    assert np.array_equal(b.mask.sum(axis=0), np.ones(50)) and np.all(b.mask[-1] == 1)


def test_adding_constant_predictor_scores_one_sixth(rng: np.random.Generator) -> None:
    task = AddingProblem(10)
    b = task.sample(rng, 40000)
    loss, _ = sequence_loss("mse", np.ones_like(b.targets), b.targets, b.mask)
    assert loss == pytest.approx(1 / 6, abs=0.005)
    assert task.baseline == pytest.approx(1 / 6)


def test_copy_task_structure(rng: np.random.Generator) -> None:
    task = CopyTask(7)
    b = task.sample(rng, 30)
    assert task.seq_len == 27 and b.inputs.shape == (27, 30) and b.targets.shape == (27, 30)
    symbols = b.inputs[:10]
    assert symbols.max() < 8
    assert np.all(b.inputs[10:16] == 8) and np.all(b.inputs[16] == 9) and np.all(b.inputs[17:] == 8)
    assert np.all(b.targets[:17] == 8) and np.array_equal(b.targets[17:], symbols)


def test_copy_memoryless_strategy_scores_the_baseline(rng: np.random.Generator) -> None:
    task = CopyTask(30)
    b = task.sample(rng, 20)
    logits = np.zeros(b.targets.shape + (9,))
    logits[: task.seq_len - 10, :, 8] = 60.0  # certain blanks, then uniform over the 8 symbols
    logits[task.seq_len - 10 :, :, 8] = -np.inf
    loss, _ = sequence_loss("xent", np.where(np.isinf(logits), -60.0, logits), b.targets, b.mask)
    assert loss == pytest.approx(10 * math.log(8) / 50, rel=1e-6)
    assert task.baseline == pytest.approx(10 * math.log(8) / 50)


def _text_file(tmp_path: Path, rng: np.random.Generator, n: int = 3000) -> Path:
    alphabet = list("abcdé \n")
    path = tmp_path / "text.txt"
    path.write_text("".join(rng.choice(alphabet, n)), encoding="utf-8")
    return path


def test_charlm_windows_split_and_baseline(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _text_file(tmp_path, rng)
    task = CharLM(path, seq_len=16, val_fraction=0.2)
    text = path.read_text(encoding="utf-8")
    assert task.vocab == "".join(sorted(set(text))) and task.output_size == len(task.vocab)
    assert len(task.train_ids) == 2400 and task.decode(task.val_ids) == text[2400:]
    b = task.sample(rng, 8)
    assert b.inputs.shape == (16, 8)
    assert np.array_equal(b.inputs[1:], b.targets[:-1])
    test = task.test_set()
    assert test.inputs.shape[1] == (600 - 1) // 16
    assert task.decode(test.inputs[:, 1]) == text[2416:2432]
    counts = np.bincount(task.train_ids, minlength=len(task.vocab)) + 1.0
    expected = -np.log(counts[task.val_ids] / counts.sum()).mean()
    assert task.baseline == pytest.approx(expected)


def test_charlm_rejects_bad_files(tmp_path: Path, rng: np.random.Generator) -> None:
    with pytest.raises(ValueError, match="path: expected an existing UTF-8 text file"):
        CharLM(tmp_path / "missing.txt", 8)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff\xfe")
    with pytest.raises(ValueError, match="path: expected UTF-8 text"):
        CharLM(bad, 2)
    with pytest.raises(ValueError, match="seq_len: expected at most"):
        CharLM(_text_file(tmp_path, rng, 100), 50)


def test_sample_text_is_reproducible_and_in_vocabulary(tmp_path: Path,
                                                       rng: np.random.Generator) -> None:
    task = CharLM(_text_file(tmp_path, rng), seq_len=8)
    model = SequenceModel("lstm", task.input_size, 8, task.output_size, input_kind="onehot",
                          device="cpu", seed=1)
    seed = int(rng.integers(1 << 30))
    a = sample_text(model, task.vocab, "ab", 40, 1.0, np.random.default_rng(seed))
    b = sample_text(model, task.vocab, "ab", 40, 1.0, np.random.default_rng(seed))
    assert a == b and len(a) == 40 and set(a) <= set(task.vocab)
    with pytest.raises(ValueError, match="prime: expected characters of the vocabulary"):
        sample_text(model, task.vocab, "xyz", 5, 1.0, rng)


def test_make_task_rebuilds_from_config(tmp_path: Path, rng: np.random.Generator) -> None:
    for task in (AddingProblem(12, test_size=7), CopyTask(5),
                 CharLM(_text_file(tmp_path, rng), 10)):
        again = make_task(task.config())
        assert type(again) is type(task) and again.config() == task.config()
        a, b = task.test_set(), again.test_set()
        assert np.array_equal(a.inputs, b.inputs) and np.array_equal(a.targets, b.targets)
    with pytest.raises(ValueError, match="task: expected one of"):
        make_task({"task": "sorting"})


def test_sequential_digits(rng: np.random.Generator) -> None:
    pytest.importorskip("sklearn")
    task = make_task({"task": "digits"})
    b = task.sample(rng, 16)
    assert b.inputs.shape == (8, 16, 8) and b.inputs.max() <= 1.0
    assert np.all(b.targets == b.targets[-1]) and b.mask[-1].all() and not b.mask[:-1].any()
    assert task.test_set().inputs.shape[1] == round(1797 * 0.2)
