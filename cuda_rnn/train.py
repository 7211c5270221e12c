"""The Trainer: full or truncated BPTT, evaluation, learning-rate schedule, progress, checkpoints
and a guard against non-finite losses and gradients.

One training step draws one batch of whole sequences (length T) from the task and makes one or
more parameter updates on it:

Full BPTT (``tbptt=None``)
    One update: forward over all T steps, loss on every scored step, backward through all T.

Truncated BPTT (``tbptt=(k1, k2)``)
    The sequence is cut into chunks [s, e) of k1 steps (s = 0, k1, 2 k1, ...; the last chunk
    may be shorter) and each chunk makes one update, with the recurrent state carried from one
    chunk to the next (the state is just an array, so carrying it is what stops the gradient).
    The update of chunk [s, e) backpropagates through the window [w, e), w = max(0, s + k1 - k2)
    (so a short last chunk keeps the offset of a full one, and k1 = k2 gives disjoint windows):

    - k2 >= k1: the window reaches k2 - k1 steps back before the chunk. The forward is re-run
      over the whole window from the state saved at step w (computed with the parameters of the
      update before); the loss counts only the chunk's steps [s, e), the newest k1, and the
      gradient flows back through all k2 steps.
    - k2 < k1: the first k1 - k2 steps of the chunk are run forward only (their state is carried,
      their loss is not counted); the update's loss and gradient cover the last k2 steps [w, e).
      No step outside a window is ever scored, so with k2 < k1 only the newest k2 of every k1
      steps train the output layer; a short last chunk that ends before w makes no update.

    With k1 = k2 = T this is exactly full BPTT. A window whose mask scores no step (e.g. all but
    the last chunk of the adding problem) makes no update. The logged loss of the step is the
    mean over all the step's scored positions; the logged gradient norm is the largest of its
    updates.

After each backward the global gradient norm is measured (and clipped, if asked). A loss or a
norm that is nan or inf stops training with :class:`TrainingDiverged` before the update, so
the parameters and the last checkpoint on disk stay as they were after the last good step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .losses import sequence_loss
from .model import SequenceModel
from .optim import Optimizer, clip_grad_norm, clip_grad_value, global_norm
from .tasks import Batch, Task
from .validation import choice, positive_int

SCHEDULES = ("constant", "cosine")


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became nan or inf; training stopped before applying it."""


def lr_schedule(kind: str, base_lr: float, total_steps: int, warmup: int = 0
                ) -> Callable[[int], float]:
    """Learning rate as a function of the (0-based) step.

    "constant" keeps ``base_lr``; "cosine" decays it to 0 at ``total_steps`` along a half
    cosine. Either is preceded by a linear ramp from ``base_lr / warmup`` over ``warmup`` steps.
    """
    choice(kind, "schedule", SCHEDULES)
    total_steps = positive_int(total_steps, "total_steps")
    if warmup < 0:
        raise ValueError(f"warmup: expected an integer >= 0, got {warmup!r}")

    def lr(step: int) -> float:
        if step < warmup:
            return base_lr * (step + 1) / warmup
        if kind == "constant":
            return base_lr
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    return lr


@dataclass
class TrainConfig:
    """How to train.

    steps : training steps (batches) in total.
    batch_size : sequences per batch.
    clip : max global gradient norm, or None for no norm clipping.
    clip_value : clamp every gradient element into [-clip_value, clip_value], or None.
    tbptt : (k1, k2) for truncated BPTT (see the module docstring), or None for full BPTT.
    schedule, warmup : see :func:`lr_schedule`.
    eval_every : evaluate on the test set every this many steps (0: only at the end).
    checkpoint_every : write the checkpoint every this many steps (0: only at the end).
    eval_batch : sequences per forward pass when evaluating.
    """

    steps: int
    batch_size: int
    clip: float | None = 1.0
    clip_value: float | None = None
    tbptt: tuple[int, int] | None = None
    schedule: str = "constant"
    warmup: int = 0
    eval_every: int = 0
    checkpoint_every: int = 0
    eval_batch: int = 256

    def __post_init__(self) -> None:
        positive_int(self.steps, "steps")
        positive_int(self.batch_size, "batch_size")
        positive_int(self.eval_batch, "eval_batch")
        if self.tbptt is not None:
            if len(self.tbptt) != 2:
                raise ValueError(f"tbptt: expected a pair (k1, k2), got {self.tbptt!r}")
            self.tbptt = (positive_int(self.tbptt[0], "tbptt k1"),
                          positive_int(self.tbptt[1], "tbptt k2"))
        for name in ("eval_every", "checkpoint_every", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        choice(self.schedule, "schedule", SCHEDULES)


def tbptt_windows(T: int, k1: int, k2: int) -> list[tuple[int, int, int]]:
    """The updates of one sequence of length T as (w, s, e): backpropagate through [w, e),
    score the steps [s, e) (see the module docstring)."""
    windows = []
    for start in range(0, T, k1):
        e = min(start + k1, T)
        w = max(0, start + k1 - k2)
        if w < e:
            windows.append((w, max(start, w), e))
    return windows


@dataclass
class History:
    """Per-step training records and the evaluations made along the way."""

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, np.int64 if k == "eval_step" else np.float64)
                for k, v in vars(self).items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "History":
        return cls(**{k: arrays[k].tolist() for k in vars(cls()) if k in arrays})


class Trainer:
    """Trains a :class:`SequenceModel` on a :class:`Task`.

    Parameters
    ----------
    model, task, optimizer : the optimizer must hold ``model.parameters()``.
    config : a :class:`TrainConfig`.
    seed : seeds the generator that draws the training batches.
    checkpoint_path : where :meth:`fit` writes checkpoints (None: nowhere).
    run_config : JSON-serialisable description stored in every checkpoint (e.g. the CLI's
        arguments), so a run can be rebuilt from its checkpoint.
    progress : show a tqdm progress bar with the loss and gradient norm (when tqdm is
        installed).
    """

    def __init__(
        self,
        model: SequenceModel,
        task: Task,
        optimizer: Optimizer,
        config: TrainConfig,
        seed: int | None = None,
        checkpoint_path: str | Path | None = None,
        run_config: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        if set(optimizer.params) != set(model.parameters()):
            raise ValueError("optimizer: expected to hold model.parameters(), got other keys")
        self.model, self.task, self.optimizer, self.config = model, task, optimizer, config
        self.rng = np.random.default_rng(seed)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.run_config = dict(run_config or {})
        self.progress = progress
        self.step = 0
        self.history = History()
        self.base_lr = optimizer.lr
        self._lr = lr_schedule(config.schedule, self.base_lr, config.steps, config.warmup)
        self._test_set: Batch | None = None

    # ----------------------------------------------------------------- one update
    def _to_device(self, a: np.ndarray) -> Any:
        return self.model.xp.asarray(a)

    def _apply(self, loss: float) -> float:
        grads = self.model.grads
        if self.config.clip is not None:
            norm = clip_grad_norm(grads, self.config.clip)
        else:
            norm = global_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            where = (f"; the last good checkpoint is {str(self.checkpoint_path)!r}"
                     if self.checkpoint_path is not None and self.checkpoint_path.exists()
                     else "")
            raise TrainingDiverged(
                f"training diverged at step {self.step + 1}: loss {loss}, gradient norm {norm}; "
                f"stopped before the update{where} (a lower learning rate or gradient clipping "
                f"may help)"
            )
        if self.config.clip_value is not None:
            clip_grad_value(grads, self.config.clip_value)
        self.optimizer.step(grads)
        return norm

    def train_batch(self, batch: Batch) -> tuple[float, float]:
        """All the updates of one batch (full or truncated BPTT); returns (loss, grad norm)."""
        T = batch.inputs.shape[0]
        k1, k2 = self.config.tbptt or (T, T)
        windows = tbptt_windows(T, k1, k2)
        self.model.train()
        state, pos = None, 0
        total, count, max_norm = 0.0, 0.0, 0.0
        for j, (w, s, e) in enumerate(windows):
            if pos < w:
                _, state = self.model.forward(batch.inputs[pos:w], state)
                pos = w
            outputs, final = self.model.forward(batch.inputs[w:e], state)
            mask = batch.mask[w:e].copy()
            mask[: s - w] = 0.0
            scored = float(mask.sum())
            next_w = windows[j + 1][0] if j + 1 < len(windows) else e
            if scored:
                loss, dout = sequence_loss(self.task.loss_kind, outputs,
                                           self._to_device(batch.targets[w:e]),
                                           self._to_device(mask))
                self.model.zero_grad()
                self.model.backward(dout)
            if next_w < e:
                # The next window starts inside this one: save its starting state now, with the
                # parameters that produced this window, after this window's backward is done.
                _, state = self.model.forward(batch.inputs[w:next_w], state)
                pos = next_w
            else:
                state, pos = final, e
            if scored:
                max_norm = max(max_norm, self._apply(loss))
                total += loss * scored
                count += scored
        if not count:
            raise ValueError(
                f"tbptt: expected windows that score at least one step of the batch, got "
                f"(k1, k2) = {(k1, k2)}, whose windows {windows} score none of its T={T} steps"
            )
        return total / count, max_norm

    # ----------------------------------------------------------------- evaluation
    def evaluate(self) -> float:
        """Mean loss on the task's test set (model in eval mode: no dropout)."""
        if self._test_set is None:
            self._test_set = self.task.test_set()
        test = self._test_set
        self.model.eval()
        total = count = 0.0
        try:
            for start in range(0, test.batch_size, self.config.eval_batch):
                part = test.rows(start, start + self.config.eval_batch)
                outputs, _ = self.model.forward(part.inputs)
                loss, _ = sequence_loss(self.task.loss_kind, outputs,
                                        self._to_device(part.targets), self._to_device(part.mask))
                scored = float(part.mask.sum())
                total += loss * scored
                count += scored
        finally:
            self.model.train()
        return total / count

    # ----------------------------------------------------------------- checkpoints
    def state(self) -> Checkpoint:
        """A checkpoint of the run as it stands (host copies)."""
        meta = {
            "step": self.step,
            "rng": self.rng.bit_generator.state,
            "layer_rng": self.model.rnn.rng.bit_generator.state,
            "config": self.run_config,
        }
        return Checkpoint(self.model.state_dict(), self.optimizer.state_dict(),
                          self.history.to_arrays(), meta)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from ``checkpoint``: parameters, optimizer, step, history, generators."""
        self.model.load_state_dict(checkpoint.params)
        self.optimizer.load_state_dict(checkpoint.optimizer)
        self.history = History.from_arrays(checkpoint.history)
        self.step = int(checkpoint.meta["step"])
        self.rng.bit_generator.state = checkpoint.meta["rng"]
        self.model.rnn.rng.bit_generator.state = checkpoint.meta["layer_rng"]

    def save(self) -> None:
        """Write the checkpoint (after checking that every parameter is finite)."""
        if self.checkpoint_path is None:
            return
        for name, p in self.model.parameters().items():
            if not bool(self.model.xp.isfinite(p).all()):
                raise TrainingDiverged(
                    f"training diverged by step {self.step}: parameter {name!r} is not finite; "
                    f"the checkpoint {str(self.checkpoint_path)!r} was left as it was"
                )
        save_checkpoint(self.checkpoint_path, self.state())

    def resume(self) -> bool:
        """Restore from ``checkpoint_path`` when that file exists; True if it did."""
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return False
        self.restore(load_checkpoint(self.checkpoint_path))
        return True

    # ----------------------------------------------------------------- the loop
    def fit(self, stop_at: int | None = None) -> History:
        """Train from the current step up to ``stop_at`` (default: ``config.steps``).

        Raises
        ------
        TrainingDiverged
            When a loss or gradient norm is nan or inf (nothing of that step is applied).
        """
        cfg = self.config
        stop = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
        bar = _progress_bar(self.progress, cfg.steps, self.step, self.model.config["cell"])
        try:
            while self.step < stop:
                lr = self._lr(self.step)
                self.optimizer.lr = lr
                loss, norm = self.train_batch(self.task.sample(self.rng, cfg.batch_size))
                self.step += 1
                self.history.loss.append(loss)
                self.history.grad_norm.append(norm)
                self.history.lr.append(lr)
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                    self.history.eval_step.append(self.step)
                    self.history.eval_loss.append(self.evaluate())
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", gnorm=f"{norm:.3g}", refresh=False)
        finally:
            if bar is not None:
                bar.close()
        if self.step == cfg.steps and (not self.history.eval_step
                                       or self.history.eval_step[-1] != self.step):
            self.history.eval_step.append(self.step)
            self.history.eval_loss.append(self.evaluate())
        self.save()
        return self.history


def _progress_bar(enabled: bool, total: int, initial: int, label: str) -> Any:
    """A tqdm bar, or None when disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=label, unit="step", dynamic_ncols=True)

