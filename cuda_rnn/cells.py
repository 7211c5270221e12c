"""Single-step cells RNNCell, LSTMCell and GRUCell, like ``torch.nn.*Cell``, with backward.

A cell runs the same ``<cell>_forward`` / ``<cell>_backward`` as the layers over a sequence of
one step. In training mode each forward pushes what its backward needs onto a stack and each
backward pops the newest, so calling a cell T times and then ``backward`` T times is exact BPTT
(the way to unroll a recurrence by hand). In eval mode nothing is kept.

Inputs (x, states, their gradients) follow the layers' rule: floating point of any precision,
cast to the cell's dtype; any other dtype is a ValueError naming the argument.
"""
from __future__ import annotations

from typing import Any

from . import backend
from .module import Array, Module
from .validation import check_floating, check_shape, choice, positive_int, shape_of, state_parts


class _Cell(Module):
    """Common machinery: parameters, input checks and the stack of saved steps."""

    _cell = ""
    _gates = 1
    _state_names: tuple[str, ...] = ("h",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.bias = bool(bias)
        self._setup(self._cell, dtype, device, seed)
        self._stack: list[tuple[Any, bool, int]] = []

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        GH = self._gates * self.hidden_size
        shapes = {"weight_ih": (GH, self.input_size), "weight_hh": (GH, self.hidden_size)}
        if self.bias:
            shapes.update(bias_ih=(GH,), bias_hh=(GH,))
        return shapes

    def _weights(self) -> tuple[Array, ...]:
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

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
        a = backend.asarray(x, self.dtype, self.device).reshape(1, B, self.input_size)
        state = state_parts(state, self._state_names)
        expected = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        states = []
        for s, name in zip(state, self._state_names):
            if s is None:
                states.append(self.xp.zeros((B, self.hidden_size), dtype=a.dtype))
            else:
                check_shape(s, expected, name)
                check_floating(s, name, self._params_dtype())
                states.append(backend.asarray(s, self.dtype, self.device).reshape(B, -1))
        return self.xp.ascontiguousarray(a), states, unbatched

    def _finish(self, arrays: list[Array], unbatched: bool) -> Any:
        out = [a[0] if unbatched else a for a in arrays]
        return out[0] if len(out) == 1 else tuple(out)

    def _step(self, x: Any, state: Any) -> Any:
        """Forward one step, keeping what backward needs in training mode."""
        a, states, unbatched = self._prepare(x, state)
        finals, cache = self._forward_impl(a, states)
        if self.training:
            self._stack.append((cache, unbatched, a.shape[1]))
        return self._finish(finals, unbatched)

    def _backward_step(self, grads: tuple[Any, ...]) -> tuple[Array, Any]:
        """Backward through the newest saved step, with dL/d(new state) ``grads``."""
        if not self._stack:
            raise RuntimeError("backward: no forward step left to backpropagate through")
        cache, unbatched, B = self._stack.pop()
        g = [self._grad_in(v, unbatched, B, f"d{n}") for v, n in zip(grads, self._state_names)]
        dy = self.xp.zeros((1,) + g[0].shape, dtype=g[0].dtype)
        dx, dstate, wgrads = self._backward_impl(dy, g, cache)
        self._accumulate(wgrads)
        return (dx[0, 0] if unbatched else dx[0]), self._finish(dstate, unbatched)

    def _forward_impl(self, a: Array, states: list[Array]) -> tuple[list[Array], Any]:
        raise NotImplementedError

    def _backward_impl(
        self, dy: Array, grads: list[Array], cache: Any
    ) -> tuple[Array, list[Array], tuple[Array, ...]]:
        raise NotImplementedError

    def _accumulate(self, wgrads: tuple[Array, ...]) -> None:
        for name, g in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), wgrads):
            if g is not None:
                backend.add_into(self.grads[name], g, self.dtype, self.device)

    def _grad_in(self, g: Any, unbatched: bool, B: int, name: str) -> Array:
        expected = (self.hidden_size,) if unbatched else (B, self.hidden_size)
        if g is None:
            return self.xp.zeros((B, self.hidden_size), dtype=self._params_dtype())
        check_shape(g, expected, name)
        check_floating(g, name, self._params_dtype())
        return backend.asarray(g, self.dtype, self.device).reshape(B, -1)


class LSTMCell(_Cell):
    """One LSTM step: ``h, c = cell(x, (h, c))``; ``dx, (dh, dc) = cell.backward(dh, dc)``."""

    _cell = "lstm"
    _gates = 4
    _state_names = ("h", "c")

    def __call__(self, x: Any, state: Any = None) -> tuple[Array, Array]:
        return self._step(x, state)

    def backward(self, dh: Any, dc: Any = None) -> tuple[Array, tuple[Array, Array]]:
        """Gradients for the newest un-backpropagated step; accumulates into :attr:`grads`."""
        return self._backward_step((dh, dc))

    def _forward_impl(self, a, states):
        _, h1, c1, cache = self._impl.lstm_forward(a, *states, *self._weights())
        return [h1, c1], cache

    def _backward_impl(self, dy, grads, cache):
        dx, dh0, dc0, *wgrads = self._impl.lstm_backward(dy, *grads, cache)
        return dx, [dh0, dc0], tuple(wgrads)


class GRUCell(_Cell):
    """One GRU step: ``h = cell(x, h)``; ``dx, dh = cell.backward(dh)``."""

    _cell = "gru"
    _gates = 3

    def __call__(self, x: Any, state: Any = None) -> Array:
        return self._step(x, state)

    def backward(self, dh: Any) -> tuple[Array, Array]:
        """Gradients for the newest un-backpropagated step; accumulates into :attr:`grads`."""
        return self._backward_step((dh,))

    def _forward_impl(self, a, states):
        _, h1, cache = self._impl.gru_forward(a, states[0], *self._weights())
        return [h1], cache

    def _backward_impl(self, dy, grads, cache):
        dx, dh0, *wgrads = self._impl.gru_backward(dy, grads[0], cache)
        return dx, [dh0], tuple(wgrads)


class RNNCell(_Cell):
    """One Elman step, nonlinearity "tanh", "relu" or "sigmoid":
    ``h = cell(x, h)``; ``dx, dh = cell.backward(dh)``."""

    _cell = "rnn"
    NONLINEARITIES = ("tanh", "relu", "sigmoid")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.nonlinearity = choice(nonlinearity, "nonlinearity", self.NONLINEARITIES)
        super().__init__(input_size, hidden_size, bias, dtype, device, seed)

    def __call__(self, x: Any, state: Any = None) -> Array:
        return self._step(x, state)

    def backward(self, dh: Any) -> tuple[Array, Array]:
        """Gradients for the newest un-backpropagated step; accumulates into :attr:`grads`."""
        return self._backward_step((dh,))

    def _forward_impl(self, a, states):
        _, h1, cache = self._impl.rnn_forward(
            a, states[0], *self._weights(), nonlinearity=self.nonlinearity
        )
        return [h1], cache

    def _backward_impl(self, dy, grads, cache):
        dx, dh0, *wgrads = self._impl.rnn_backward(dy, grads[0], cache)
        return dx, [dh0], tuple(wgrads)
