"""Experiments built on the library: the vanishing-gradient comparison of cells and text
generation from a character-level model.

This is application code: it sits above :mod:`cuda_rnn.train` (it trains models) and below
:mod:`cuda_rnn.cli`; nothing in the library imports it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import to_numpy
from .losses import sequence_loss
from .model import CELLS, SequenceModel
from .optim import Adam
from .tasks import Batch, Task
from .train import TrainConfig, Trainer
from .validation import choice, positive_int
from .vanishing import state_grad_norms

#: Cell variants the comparisons name: label -> (model cell, its options). The LSTM without a
#: forget gate is the constant error carousel of Hochreiter and Schmidhuber (1997):
#: c_t = c_{t-1} + i * g, so dL/dc_{t-1} = dL/dc_t along the cell.
NAMED_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "lstm-carousel": ("lstm", {"forget_gate": False}),
}
#: What the comparisons take: every model cell and every named variant.
COMPARISON_CELLS = CELLS + tuple(NAMED_VARIANTS)


def resolve_cell(name: str) -> tuple[str, dict[str, Any]]:
    """(model cell, options) of a name in :data:`COMPARISON_CELLS`.

    Raises
    ------
    ValueError
        For any other name.
    """
    choice(name, "cell", COMPARISON_CELLS)
    cell, options = NAMED_VARIANTS.get(name, (name, {}))
    return cell, dict(options)


def model_state_grad_norms(model: SequenceModel, task: Task, batch: Batch) -> np.ndarray:
    """:func:`cuda_rnn.vanishing.state_grad_norms` of ``model``'s recurrent stack under
    ``task``'s loss on ``batch`` (zero initial state); returns (num_layers, T)."""
    model.eval()
    try:
        x = model.encode(batch.inputs)
        y, _ = model.rnn(x)
        outputs = model.head.forward(y)
        _, dout = sequence_loss(task.loss_kind, outputs, model.xp.asarray(batch.targets),
                                model.xp.asarray(batch.mask))
        dy = dout @ model.head.parameters()["weight"]
        return state_grad_norms(model.rnn, x, dy)
    finally:
        model.train()


def compare_cells(
    cells: list[str], task: Task, hidden_size: int, batch_size: int, seed: int,
    train_steps: int = 0, lr: float = 3e-3, progress: bool = False,
) -> dict[str, np.ndarray]:
    """||dL/dh_t|| (first layer, shape (T,)) of a one-layer model of each cell (a name of
    :data:`COMPARISON_CELLS`), all measured on the same batch of ``task`` and built from the
    same seed.

    Each cell gets the curve at initialisation, labelled ``"{cell} init"``, and with
    ``train_steps > 0`` also after that many Adam steps on the task (batches of 64, gradient
    norm clipped to 1), labelled ``"{cell} trained"``; ``progress`` shows a progress bar for
    that training. At PyTorch's initialisation the LSTM's forget gate sits near
    sigmoid(0) = 1/2, so its gradient vanishes like a tanh RNN's; training on a long-range task
    opens the forget gate and the additive cell path carries it back. The carousel
    ("lstm-carousel", no forget gate) carries it back unchanged from the start.
    """
    batch = task.sample(np.random.default_rng(seed), batch_size)
    out = {}
    for cell in cells:
        name, options = resolve_cell(cell)
        model = SequenceModel(name, task.input_size, hidden_size, task.output_size,
                              input_kind=task.input_kind, dtype="float64", device="cpu",
                              seed=seed, options=options)
        out[f"{cell} init"] = model_state_grad_norms(model, task, batch)[0]
        if train_steps > 0:
            config = TrainConfig(steps=train_steps, batch_size=64, clip=1.0)
            Trainer(model, task, Adam(model.parameters(), lr), config, seed=seed,
                    progress=progress).fit()
            out[f"{cell} trained"] = model_state_grad_norms(model, task, batch)[0]
    return out


def sample_text(
    model: SequenceModel, vocab: str, prime: str, length: int, temperature: float,
    rng: np.random.Generator,
) -> str:
    """Generate ``length`` characters from a character-level model, one step at a time.

    Parameters
    ----------
    model : a trained :class:`cuda_rnn.model.SequenceModel` over the ids of ``vocab``.
    vocab : the training vocabulary (:attr:`cuda_rnn.tasks.CharLM.vocab`).
    prime : text (at least one character, all in ``vocab``) that sets the state first.
    length : characters to generate.
    temperature : divides the logits; below 1 sharpens, above 1 flattens the distribution.
    rng : draws each next character.
    """
    if not prime:
        raise ValueError("prime: expected at least one character, got ''")
    positive_int(length, "length")
    if not temperature > 0:
        raise ValueError(f"temperature: expected a number > 0, got {temperature!r}")
    index = {ch: k for k, ch in enumerate(vocab)}
    unknown = sorted(set(prime) - set(index))
    if unknown:
        raise ValueError(f"prime: expected characters of the vocabulary, got {unknown[:5]!r}")
    model.eval()
    ids = np.array([[index[ch] for ch in prime]], np.int64).T  # (T, 1)
    logits, state = model.forward(ids)
    out: list[str] = []
    for _ in range(length):
        z = to_numpy(logits[-1, 0]).astype(np.float64) / temperature
        p = np.exp(z - z.max())
        nxt = int(rng.choice(len(vocab), p=p / p.sum()))
        out.append(vocab[nxt])
        logits, state = model.forward(np.array([[nxt]], np.int64), state)
    return "".join(out)
