"""How the gradient vanishes or explodes back through time: ||dL/dh_t|| for every step t.

The layers backpropagate through a whole sequence in one call and only hand back dL/dh_0, so
here a layer's weights are copied into its one-step twins (:mod:`cuda_rnn.cells`) and the
recurrence is unrolled by hand: each cell step keeps what its backward needs, and the backward
walks the steps in reverse, so the total gradient with respect to every hidden state,

    dL/dh_t = dL/dy_t (direct, from the output at t) + (dL/dh_{t+1}) (dh_{t+1}/dh_t),

is in hand at each t. The norm reported is the Frobenius norm of dL/dh_t over the batch.
Dropout is not applied (as in eval mode); bidirectional stacks are not supported (the reverse
direction's h_t depends on the future, so there is no single "back in time").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import to_numpy
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN
from .losses import sequence_loss
from .model import SequenceModel
from .tasks import Batch, Task

Array = Any


def _cell_twin(layer: LSTM | GRU | RNN, k: int) -> LSTMCell | GRUCell | RNNCell:
    """A cell holding a copy of layer ``k``'s weights."""
    in_size = layer.input_size if k == 0 else layer.hidden_size
    common = dict(bias=layer.bias, dtype=layer.dtype, device=layer.device)
    if isinstance(layer, LSTM):
        cell = LSTMCell(in_size, layer.hidden_size, **common)
    elif isinstance(layer, GRU):
        cell = GRUCell(in_size, layer.hidden_size, **common)
    else:
        cell = RNNCell(in_size, layer.hidden_size, nonlinearity=layer.nonlinearity, **common)
    params = layer.parameters()
    cell.load_state_dict({name: params[f"{name}_l{k}"] for name in cell.parameters()})
    return cell


def state_grad_norms(layer: LSTM | GRU | RNN, x: Any, dy: Any) -> np.ndarray:
    """||dL/dh_t|| for every layer of the stack and every step.

    Parameters
    ----------
    layer : a unidirectional RNN, LSTM or GRU stack (time-major, batch_first=False).
    x : (T, B, input_size) input.
    dy : (T, B, hidden_size) gradient of the loss with respect to the stack's output y;
        the initial state is zero and the loss does not depend on the final state.

    Returns
    -------
    (num_layers, T) array; row k, column t is the Frobenius norm over the batch of
    dL/dh_t of layer k.
    """
    if layer.bidirectional or layer.batch_first:
        raise ValueError(
            f"layer: expected a unidirectional time-major stack, got bidirectional="
            f"{layer.bidirectional}, batch_first={layer.batch_first}"
        )
    x = layer.xp.asarray(x)
    dy = layer.xp.asarray(dy)
    T, B = x.shape[:2]
    if tuple(dy.shape) != (T, B, layer.hidden_size):
        raise ValueError(f"dy: expected shape {(T, B, layer.hidden_size)}, got {tuple(dy.shape)}")
    is_lstm = isinstance(layer, LSTM)
    cells = [_cell_twin(layer, k) for k in range(layer.num_layers)]
    inp = x
    for cell in cells:
        state = None
        outs = []
        for t in range(T):
            state = cell(inp[t], state)
            outs.append(state[0] if is_lstm else state)
        inp = layer.xp.stack(outs)
    norms = np.empty((layer.num_layers, T))
    g_out = dy
    for k in range(layer.num_layers - 1, -1, -1):
        dh = layer.xp.zeros_like(g_out[0])
        dc = layer.xp.zeros_like(g_out[0])
        dxs = [None] * T
        for t in range(T - 1, -1, -1):
            total = g_out[t] + dh
            norms[k, t] = float(to_numpy(layer.xp.linalg.norm(total)))
            if is_lstm:
                dxs[t], (dh, dc) = cells[k].backward(total, dc)
            else:
                dxs[t], dh = cells[k].backward(total)
        g_out = layer.xp.stack(dxs)
    return norms


def model_state_grad_norms(model: SequenceModel, task: Task, batch: Batch) -> np.ndarray:
    """:func:`state_grad_norms` of ``model``'s recurrent stack under ``task``'s loss on
    ``batch`` (zero initial state); returns (num_layers, T)."""
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
    train_steps: int = 0, lr: float = 3e-3,
) -> dict[str, np.ndarray]:
    """||dL/dh_t|| (first layer, shape (T,)) of a one-layer model of each cell, all measured
    on the same batch of ``task`` and built from the same seed.

    Each cell gets the curve at initialisation, labelled ``"{cell} init"``, and with
    ``train_steps > 0`` also after that many Adam steps on the task (batches of 64, gradient
    norm clipped to 1), labelled ``"{cell} trained"``. At PyTorch's initialisation the LSTM's
    forget gate sits near sigmoid(0) = 1/2, so its gradient vanishes like a tanh RNN's; training
    on a long-range task opens the forget gate and the additive cell path carries it back.
    """
    from .optim import Adam
    from .train import TrainConfig, Trainer

    batch = task.sample(np.random.default_rng(seed), batch_size)
    out = {}
    for cell in cells:
        model = SequenceModel(cell, task.input_size, hidden_size, task.output_size,
                              input_kind=task.input_kind, dtype="float64", device="cpu",
                              seed=seed)
        out[f"{cell} init"] = model_state_grad_norms(model, task, batch)[0]
        if train_steps > 0:
            config = TrainConfig(steps=train_steps, batch_size=64, clip=1.0)
            Trainer(model, task, Adam(model.parameters(), lr), config, seed=seed).fit()
            out[f"{cell} trained"] = model_state_grad_norms(model, task, batch)[0]
    return out
