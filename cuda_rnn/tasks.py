"""Sequence tasks, each generated or loaded from its published definition.

A task hands out time-major batches (:class:`Batch`) on the host, says how its outputs are
scored (``loss_kind`` with a mask over steps), and knows the score of the trivial baseline it
must beat:

- :class:`AddingProblem` (Le et al. 2015; Arjovsky et al. 2016): MSE of the sum of two marked
  values; predicting the constant 1 scores Var(U1 + U2) = 1/6.
- :class:`CopyTask` (Arjovsky et al. 2016): reproduce 10 symbols after T blanks; the memoryless
  strategy scores 10 log(8) / (T + 20) nats per step.
- :class:`CharLM`: next-character prediction on any UTF-8 text; the baseline is the unigram
  cross-entropy (character frequencies of the training split, scored on validation).
- :class:`SequentialDigits`: scikit-learn's 8x8 digits read one row per step (8 steps of 8
  pixels), classified at the last step; chance is log(10).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .validation import positive_int


class Batch(NamedTuple):
    """A time-major batch on the host.

    inputs : (T, B, I) float32 features, or (T, B) int64 tokens.
    targets : (T, B, O) float32 (loss_kind "mse") or (T, B) int64 classes ("xent").
    mask : (T, B) float32, 1 at the steps that are scored, 0 elsewhere.
    """

    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray

    def rows(self, start: int, stop: int) -> "Batch":
        """The sub-batch of sequences [start, stop)."""
        return Batch(self.inputs[:, start:stop], self.targets[:, start:stop],
                     self.mask[:, start:stop])

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[1]


class Task:
    """Interface of a task; subclasses set the attributes and implement :meth:`sample`."""

    name = ""
    input_kind = "dense"  # "dense" features or "onehot" tokens (see model.INPUT_KINDS)
    input_size = 0
    output_size = 0
    loss_kind = "mse"  # see losses.LOSS_KINDS
    baseline = 0.0
    baseline_name = ""
    seq_len = 0

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        """A fresh training batch drawn with ``rng``."""
        raise NotImplementedError

    def test_set(self) -> Batch:
        """The fixed held-out batch that evaluation scores (the same on every call)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """What rebuilds the task: its name and constructor arguments (JSON-serialisable)."""
        raise NotImplementedError


def _last_step_mask(T: int, B: int) -> np.ndarray:
    mask = np.zeros((T, B), np.float32)
    mask[-1] = 1.0
    return mask


class AddingProblem(Task):
    """Two channels per step: a value ~ U[0, 1] and a marker (1 at exactly two steps, one in
    each half of the sequence, 0 elsewhere); the target, read at the last step, is the sum of
    the two marked values.

    Parameters
    ----------
    seq_len : T, at least 2.
    test_size : sequences in the fixed test set.
    test_seed : seed of the test set (independent of the training stream).
    """

    name = "adding"
    input_kind = "dense"
    input_size = 2
    output_size = 1
    loss_kind = "mse"
    baseline = 1.0 / 6.0
    baseline_name = "constant 1 (Var of the sum = 1/6)"

    def __init__(self, seq_len: int, test_size: int = 1000, test_seed: int = 12345) -> None:
        self.seq_len = positive_int(seq_len, "seq_len")
        if self.seq_len < 2:
            raise ValueError(f"seq_len: expected at least 2 (one marker per half), got {seq_len}")
        self.test_size = positive_int(test_size, "test_size")
        self.test_seed = int(test_seed)

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        B, T = positive_int(batch_size, "batch_size"), self.seq_len
        half = T // 2
        values = rng.uniform(0.0, 1.0, (T, B))
        first = rng.integers(0, half, B)
        second = rng.integers(half, T, B)
        markers = np.zeros((T, B))
        cols = np.arange(B)
        markers[first, cols] = 1.0
        markers[second, cols] = 1.0
        inputs = np.stack([values, markers], axis=-1).astype(np.float32)
        targets = np.zeros((T, B, 1), np.float32)
        targets[-1, :, 0] = values[first, cols] + values[second, cols]
        return Batch(inputs, targets, _last_step_mask(T, B))

    def test_set(self) -> Batch:
        return self.sample(np.random.default_rng(self.test_seed), self.test_size)

    def config(self) -> dict[str, Any]:
        return {"task": self.name, "seq_len": self.seq_len, "test_size": self.test_size,
                "test_seed": self.test_seed}


class CopyTask(Task):
    """Inputs (length T + 20): 10 symbols drawn from classes 0..7, T - 1 blanks (8), a
    delimiter (9), 10 blanks. Targets: T + 10 blanks, then the 10 symbols. Scored by
    cross-entropy at every step; outputs are the 9 classes 0..8.

    Parameters
    ----------
    seq_len : T, the delay, at least 1.
    test_size, test_seed : the fixed test set.
    """

    name = "copy"
    input_kind = "onehot"
    input_size = 10
    output_size = 9
    loss_kind = "xent"
    baseline_name = "memoryless: blanks, then uniform over 8 symbols"
    SYMBOLS, CLASSES, BLANK, DELIMITER = 10, 8, 8, 9

    def __init__(self, seq_len: int, test_size: int = 500, test_seed: int = 12345) -> None:
        self.delay = positive_int(seq_len, "seq_len")
        self.seq_len = self.delay + 2 * self.SYMBOLS
        self.test_size = positive_int(test_size, "test_size")
        self.test_seed = int(test_seed)
        self.baseline = self.SYMBOLS * math.log(self.CLASSES) / self.seq_len

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        B, T, S = positive_int(batch_size, "batch_size"), self.seq_len, self.SYMBOLS
        symbols = rng.integers(0, self.CLASSES, (S, B))
        inputs = np.full((T, B), self.BLANK, np.int64)
        inputs[:S] = symbols
        inputs[S + self.delay - 1] = self.DELIMITER
        targets = np.full((T, B), self.BLANK, np.int64)
        targets[-S:] = symbols
        return Batch(inputs, targets, np.ones((T, B), np.float32))

    def test_set(self) -> Batch:
        return self.sample(np.random.default_rng(self.test_seed), self.test_size)

    def config(self) -> dict[str, Any]:
        return {"task": self.name, "seq_len": self.delay, "test_size": self.test_size,
                "test_seed": self.test_seed}


class CharLM(Task):
    """Next-character prediction over a UTF-8 text file.

    The vocabulary is the sorted set of characters of the whole file. The first
    ``1 - val_fraction`` of the characters train, the rest validate. A training batch is
    ``batch_size`` windows of ``seq_len + 1`` characters at random offsets; the validation set
    is consecutive non-overlapping windows of the validation split (at most ``max_val_windows``).
    Losses are in nats per character; perplexity is exp(loss).

    Parameters
    ----------
    path : the text file.
    seq_len : characters per window (the model's T).
    val_fraction : share of the text held out, in (0, 1).
    max_val_windows : cap on the validation windows, to bound evaluation time.
    """

    name = "charlm"
    input_kind = "onehot"
    loss_kind = "xent"
    baseline_name = "unigram character frequencies"

    def __init__(
        self, path: str | Path, seq_len: int, val_fraction: float = 0.1,
        max_val_windows: int = 256,
    ) -> None:
        self.path = str(path)
        self.seq_len = positive_int(seq_len, "seq_len")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction!r}")
        self.val_fraction = float(val_fraction)
        self.max_val_windows = positive_int(max_val_windows, "max_val_windows")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(
                f"path: expected an existing UTF-8 text file, got {self.path!r}"
            ) from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"path: expected UTF-8 text, got undecodable bytes in "
                             f"{self.path!r} ({exc.reason} at byte {exc.start})") from None
        self.vocab = "".join(sorted(set(text)))
        self.input_size = self.output_size = len(self.vocab)
        ids = self.encode(text)
        split = int(len(ids) * (1.0 - self.val_fraction))
        self.train_ids, self.val_ids = ids[:split], ids[split:]
        for name, part in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(part) < self.seq_len + 1:
                raise ValueError(
                    f"seq_len: expected at most {len(part) - 1} (the {name} split of "
                    f"{self.path!r} has {len(part)} characters), got {self.seq_len}"
                )
        counts = np.bincount(self.train_ids, minlength=len(self.vocab)).astype(np.float64)
        probs = (counts + 1.0) / (counts.sum() + len(self.vocab))  # add-one: unseen val chars
        self.baseline = float(-np.log(probs[self.val_ids]).mean())

    def encode(self, text: str) -> np.ndarray:
        """Character ids of ``text`` (every character must be in the vocabulary)."""
        index = {ch: k for k, ch in enumerate(self.vocab)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise ValueError(f"text: expected characters of the vocabulary, got {unknown[:5]!r}")
        return np.fromiter((index[ch] for ch in text), np.int64, len(text))

    def decode(self, ids: Any) -> str:
        """The text of a sequence of character ids."""
        return "".join(self.vocab[int(k)] for k in ids)

    def _windows(self, ids: np.ndarray, starts: np.ndarray) -> Batch:
        offsets = starts[None, :] + np.arange(self.seq_len + 1)[:, None]
        chunk = ids[offsets]
        return Batch(chunk[:-1], chunk[1:], np.ones((self.seq_len, len(starts)), np.float32))

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        B = positive_int(batch_size, "batch_size")
        starts = rng.integers(0, len(self.train_ids) - self.seq_len, B)
        return self._windows(self.train_ids, starts)

    def test_set(self) -> Batch:
        count = min(self.max_val_windows, (len(self.val_ids) - 1) // self.seq_len)
        return self._windows(self.val_ids, np.arange(count) * self.seq_len)

    def config(self) -> dict[str, Any]:
        return {"task": self.name, "path": self.path, "seq_len": self.seq_len,
                "val_fraction": self.val_fraction, "max_val_windows": self.max_val_windows}


class SequentialDigits(Task):
    """scikit-learn's bundled 8x8 digits (1797 images), one row of 8 pixels per step
    (scaled to [0, 1]), classified at the last of the 8 steps. A fixed shuffle holds out
    ``test_fraction`` of the images. Needs scikit-learn (``pip install scikit-learn``).
    """

    name = "digits"
    input_kind = "dense"
    input_size = 8
    output_size = 10
    loss_kind = "xent"
    baseline = math.log(10)
    baseline_name = "chance over 10 classes"
    seq_len = 8

    def __init__(self, test_fraction: float = 0.2, split_seed: int = 0) -> None:
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ValueError("task: 'digits' needs scikit-learn (pip install scikit-learn), "
                             "which is not installed") from None
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {test_fraction!r}")
        self.test_fraction = float(test_fraction)
        self.split_seed = int(split_seed)
        data = load_digits()
        images = (data.images / 16.0).astype(np.float32)  # (N, 8, 8), pixel values 0..16
        order = np.random.default_rng(self.split_seed).permutation(len(images))
        n_test = int(round(len(images) * self.test_fraction))
        self._test_idx, self._train_idx = order[:n_test], order[n_test:]
        self._images, self._labels = images, data.target.astype(np.int64)

    def _batch(self, idx: np.ndarray) -> Batch:
        inputs = self._images[idx].transpose(1, 0, 2)  # (8 rows = steps, B, 8 pixels)
        targets = np.broadcast_to(self._labels[idx], (self.seq_len, len(idx))).copy()
        return Batch(inputs, targets, _last_step_mask(self.seq_len, len(idx)))

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        return self._batch(rng.choice(self._train_idx, positive_int(batch_size, "batch_size")))

    def test_set(self) -> Batch:
        return self._batch(self._test_idx)

    def config(self) -> dict[str, Any]:
        return {"task": self.name, "test_fraction": self.test_fraction,
                "split_seed": self.split_seed}


TASKS = ("adding", "copy", "charlm", "digits")


def make_task(config: dict[str, Any]) -> Task:
    """Rebuild a task from :meth:`Task.config` (``{"task": name, ...arguments}``)."""
    kwargs = dict(config)
    name = kwargs.pop("task", None)
    builders = {"adding": AddingProblem, "copy": CopyTask, "charlm": CharLM,
                "digits": SequentialDigits}
    if name not in builders:
        raise ValueError(f"task: expected one of {TASKS}, got {name!r}")
    return builders[name](**kwargs)
