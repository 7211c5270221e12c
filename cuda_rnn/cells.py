"""Single-step cells RNNCell, LSTMCell and GRUCell, like ``torch.nn.*Cell``, with backward.

A cell runs the same backend forward and backward as the layers (see
:mod:`cuda_rnn.backend`), described by its :class:`~cuda_rnn.cellspec.CellSpec`, over a
sequence of one step. In training mode each forward pushes what its backward needs onto a
stack and each backward pops the newest, so calling a cell T times and then ``backward`` T
times is exact BPTT (the way to unroll a recurrence by hand). In eval mode nothing is kept.

The regularisers' masks come from the cell's generator ``rng``: zoneout's at every step, the
recurrent and weight dropout masks once for a sequence (until :meth:`_Cell.reset_masks`).

Inputs (x, states, their gradients) follow the layers' rule: floating point of any precision,
cast to the cell's dtype; any other dtype is a ValueError naming the argument.
"""
from __future__ import annotations

from typing import Any

from . import init, regularisers
from .cellspec import NONLINEARITIES, CellSpec, cell_spec
from .module import Array, Module
from .validation import (
    check_floating,
    check_proj_size,
    check_shape,
    positive_int,
    shape_of,
    state_parts,
)


class _Cell(Module):
    """One path for every cell, reading :attr:`spec`: parameters, input checks, the stack of
    saved steps, the regularisers' masks."""

    _cell = ""  # the cell of cuda_rnn.cellspec: "rnn", "lstm", "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.spec: CellSpec = cell_spec(self._cell, **options)
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self._setup(dtype, device, seed)
        init.set_initial_constants(self)
        self._stack: list[tuple[Any, bool, int, Array | None]] = []
        self._held: tuple[int, regularisers.Masks] | None = None

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.spec.parameter_shapes(self.input_size, self.hidden_size, self.bias)

    def _weights(self) -> tuple[Array, ...]:
        return tuple(self._params.get(n) for n in self.spec.parameters)

    def _clear_saved(self) -> None:
        self._stack = []

    def train(self, mode: bool = True) -> "_Cell":
        """Training mode: forward keeps what backward needs (the default)."""
        if not mode:
            self._stack.clear()
        return super().train(mode)

    def _prepare(self, x: Any, state: Any) -> tuple[Array, list[Array], bool]:
        shape = shape_of(x)
        if len(shape) not in (1, 2) or shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected shape (B, {self.input_size}) or ({self.input_size},), got {shape}"
            )
        unbatched = len(shape) == 1
        B = 1 if unbatched else shape[0]
        check_floating(x, "x", self._params_dtype())
        a = self.backend.asarray(x, self.dtype).reshape(1, B, self.input_size)
        state = state_parts(state, self.spec.states)
        states = []
        for s, name, H in zip(state, self.spec.states, self.spec.state_sizes(self.hidden_size)):
            expected = (H,) if unbatched else (B, H)
            if s is None:
                states.append(self.xp.zeros((B, H), dtype=a.dtype))
            else:
                check_shape(s, expected, name)
                check_floating(s, name, self._params_dtype())
                states.append(self.backend.asarray(s, self.dtype).reshape(B, -1))
        return self.xp.ascontiguousarray(a), states, unbatched

    def _finish(self, arrays: list[Array], unbatched: bool) -> Any:
        out = [a[0] if unbatched else a for a in arrays]
        return out[0] if len(out) == 1 else tuple(out)

    def reset_masks(self) -> None:
        """Draw new recurrent and weight dropout masks at the next training step: call it
        before each new sequence (they hold for every step until then, and are redrawn by
        themselves when the batch size changes)."""
        self._held = None

    def _masks(self, batch: int) -> tuple[list[Array], dict[str, Any], Array | None]:
        """This step's weights (W_hh masked by weight dropout), the cell functions' masks on
        the cell's device, and the W_hh mask (None without)."""
        H, training = self.hidden_size, self.training
        if training and (self._held is None or self._held[0] != batch):
            self._held = (batch, regularisers.draw(self.spec, self.rng, 1, batch, H, True,
                                                   regularisers.PER_SEQUENCE))
        held = self._held[1] if training else regularisers.Masks({}, None)
        step = regularisers.draw(self.spec, self.rng, 1, batch, H, training,
                                 regularisers.PER_STEP)
        drawn = regularisers.Masks({**held.cell, **step.cell}, held.weight)
        return regularisers.apply(drawn, self._weights(), self.backend, self.dtype)

    def _step(self, x: Any, state: Any) -> Any:
        """Forward one step, keeping what backward needs in training mode."""
        a, states, unbatched = self._prepare(x, state)
        weights, masks, w_mask = self._masks(a.shape[1])
        run = self.backend.forward(self.spec, a, states, weights, None, masks=masks)
        if self.training:
            self._stack.append((run.cache, unbatched, a.shape[1], w_mask))
        return self._finish(list(run.states), unbatched)

    def _backward_step(self, grads: tuple[Any, ...]) -> tuple[Array, Any]:
        """Backward through the newest saved step, with dL/d(new state) ``grads``."""
        if not self._stack:
            raise RuntimeError("backward: no forward step left to backpropagate through")
        cache, unbatched, B, w_mask = self._stack.pop()
        sizes = self.spec.state_sizes(self.hidden_size)
        g = [self._grad_in(v, unbatched, B, f"d{n}", H)
             for v, n, H in zip(grads, self.spec.states, sizes)]
        dy = self.xp.zeros((1,) + g[0].shape, dtype=g[0].dtype)
        run = self.backend.backward(self.spec, dy, g, cache)
        grads_out = list(run.grads)
        if w_mask is not None:  # W_hh entered as W_hh * M: dL/dW_hh = dL/dW~ * M
            grads_out[1] = self.backend.multiply(grads_out[1], w_mask)
        for name, grad in zip(self.spec.parameters, grads_out):
            if grad is not None:
                self.backend.add_into(self.grads[name], grad)
        return (run.dx[0, 0] if unbatched else run.dx[0]), self._finish(list(run.states), unbatched)

    def _grad_in(self, g: Any, unbatched: bool, B: int, name: str, H: int) -> Array:
        expected = (H,) if unbatched else (B, H)
        if g is None:
            return self.xp.zeros((B, H), dtype=self._params_dtype())
        check_shape(g, expected, name)
        check_floating(g, name, self._params_dtype())
        return self.backend.asarray(g, self.dtype).reshape(B, -1)


class LSTMCell(_Cell):
    """One LSTM step: ``h, c = cell(x, (h, c))``; ``dx, (dh, dc) = cell.backward(dh, dc)``.

    proj_size, peephole, forget_gate, forget_bias and layer_norm as for
    :class:`cuda_rnn.layers.LSTM` (h is then (B, proj_size) and c (B, H)). The regularisers
    too (training mode): zoneout and zoneout_cell draw new masks at every step (eval mode:
    their expectations); the recurrent and weight dropout masks hold from one
    :meth:`reset_masks` to the next, so that every step of a sequence shares them.
    """

    _cell = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        proj_size: int = 0,
        peephole: bool = False,
        forget_gate: bool = True,
        forget_bias: float | None = None,
        layer_norm: bool = False,
        zoneout: float = 0.0,
        zoneout_cell: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        check_proj_size(proj_size, hidden_size)
        super().__init__(input_size, hidden_size, bias, dtype, device, seed,
                         proj_size=proj_size, peephole=peephole, forget_gate=forget_gate,
                         forget_bias=forget_bias, layer_norm=layer_norm, zoneout=zoneout,
                         zoneout_cell=zoneout_cell, recurrent_dropout=recurrent_dropout,
                         weight_dropout=weight_dropout)

    def __call__(self, x: Any, state: Any = None) -> tuple[Array, Array]:
        return self._step(x, state)

    def backward(self, dh: Any, dc: Any = None) -> tuple[Array, tuple[Array, Array]]:
        """Gradients for the newest un-backpropagated step; accumulates into :attr:`grads`."""
        return self._backward_step((dh, dc))


class GRUCell(_Cell):
    """One GRU step: ``h = cell(x, h)``; ``dx, dh = cell.backward(dh)``.

    zoneout, recurrent_dropout and weight_dropout as for :class:`LSTMCell`.
    """

    _cell = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dtype, device, seed, zoneout=zoneout,
                         recurrent_dropout=recurrent_dropout, weight_dropout=weight_dropout)

    def __call__(self, x: Any, state: Any = None) -> Array:
        return self._step(x, state)

    def backward(self, dh: Any) -> tuple[Array, Array]:
        """Gradients for the newest un-backpropagated step; accumulates into :attr:`grads`."""
        return self._backward_step((dh,))


class RNNCell(_Cell):
    """One Elman step, nonlinearity "tanh", "relu" or "sigmoid":
    ``h = cell(x, h)``; ``dx, dh = cell.backward(dh)``.

    zoneout, recurrent_dropout and weight_dropout as for :class:`LSTMCell`.
    """

    _cell = "rnn"
    NONLINEARITIES = NONLINEARITIES

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, dtype, device, seed,
                         nonlinearity=nonlinearity, zoneout=zoneout,
                         recurrent_dropout=recurrent_dropout, weight_dropout=weight_dropout)

    @property
    def nonlinearity(self) -> str:
        """"tanh", "relu" or "sigmoid"."""
        return self.spec.options.nonlinearity

    def __call__(self, x: Any, state: Any = None) -> Array:
        return self._step(x, state)

    def backward(self, dh: Any) -> tuple[Array, Array]:
        """Gradients for the newest un-backpropagated step; accumulates into :attr:`grads`."""
        return self._backward_step((dh,))


#: The cell class of each cell of :mod:`cuda_rnn.cellspec`.
CELL_CLASSES: dict[str, type[_Cell]] = {cls._cell: cls for cls in (RNNCell, LSTMCell, GRUCell)}


def make_cell(spec: CellSpec, input_size: int, hidden_size: int, **kwargs: Any) -> _Cell:
    """The single-step cell of ``spec``'s cell with its options; ``kwargs`` as for the
    classes."""
    return CELL_CLASSES[spec.cell](input_size, hidden_size, **kwargs, **spec.keywords)
