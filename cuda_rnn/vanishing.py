"""How the gradient vanishes or explodes back through time: ||dL/dh_t|| for every step t.

The layers backpropagate through a whole sequence in one call and only hand back dL/dh_0, so
here a layer's weights are copied into its one-step twins (:mod:`cuda_rnn.cells`) and the
recurrence is unrolled by hand: each cell step keeps what its backward needs, and the backward
walks the steps in reverse, so the total gradient with respect to every hidden state,

    dL/dh_t = dL/dy_t (direct, from the output at t) + (dL/dh_{t+1}) (dh_{t+1}/dh_t),

is in hand at each t. The norm reported is the Frobenius norm of dL/dh_t over the batch.
Dropout and the regularisers are not applied (the cells take none); bidirectional stacks are
not supported (the reverse direction's h_t depends on the future, so there is no single "back
in time").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .backend import to_numpy
from .cellspec import parameter_suffix
from .cells import GRUCell, LSTMCell, RNNCell, make_cell
from .layers import GRU, LSTM, RNN
from .validation import state_parts


def _cell_twin(layer: LSTM | GRU | RNN, k: int) -> LSTMCell | GRUCell | RNNCell:
    """A cell holding a copy of layer ``k``'s weights."""
    in_size = layer.input_size if k == 0 else layer.output_size
    cell = make_cell(layer.spec, in_size, layer.hidden_size, bias=layer.bias,
                     dtype=layer.dtype, device=layer.device)
    params = layer.parameters()
    suffix = parameter_suffix(k, 0)
    cell.load_state_dict({name: params[name + suffix] for name in cell.parameters()})
    return cell


def state_grad_norms(layer: LSTM | GRU | RNN, x: Any, dy: Any) -> np.ndarray:
    """||dL/dh_t|| for every layer of the stack and every step.

    Parameters
    ----------
    layer : a unidirectional RNN, LSTM or GRU stack (time-major, batch_first=False).
    x : (T, B, input_size) input.
    dy : (T, B, P') gradient of the loss with respect to the stack's output y (P' the
        layer's output_size: proj_size with a projection, else hidden_size); the initial
        state is zero and the loss does not depend on the final state.

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
    if tuple(dy.shape) != (T, B, layer.output_size):
        raise ValueError(f"dy: expected shape {(T, B, layer.output_size)}, got {tuple(dy.shape)}")
    names = layer.spec.states
    cells = [_cell_twin(layer, k) for k in range(layer.num_layers)]
    inp = x
    for cell in cells:
        state = None
        outs = []
        for t in range(T):
            state = cell(inp[t], state)
            outs.append(state_parts(state, names)[0])
        inp = layer.xp.stack(outs)
    norms = np.empty((layer.num_layers, T))
    g_out = dy
    for k in range(layer.num_layers - 1, -1, -1):
        # dL/d(state)_t from step t + 1; h's gets the direct term dy_t added.
        dstates = [layer.xp.zeros((B, n), g_out.dtype)
                   for n in layer.spec.state_sizes(layer.hidden_size)]
        dxs = [None] * T
        for t in range(T - 1, -1, -1):
            total = g_out[t] + dstates[0]
            norms[k, t] = float(to_numpy(layer.xp.linalg.norm(total)))
            dxs[t], dprev = cells[k].backward(total, *dstates[1:])
            dstates = list(state_parts(dprev, names))
        g_out = layer.xp.stack(dxs)
    return norms
