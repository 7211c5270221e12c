"""Sequence layers RNN, LSTM and GRU: multi-layer, bidirectional, variable lengths, exact BPTT.

A layer stacks ``num_layers`` layers of one or two directions. Each layer-direction runs the
cell its :class:`~cuda_rnn.cellspec.CellSpec` describes over the whole sequence through the
layer's backend (the NumPy reference on "cpu", the CUDA step loops on "cuda"; see
:mod:`cuda_rnn.backend`), and :meth:`backward` runs the matching reverse-time BPTT over the
last forward. Shapes, parameter names and gate order follow ``torch.nn.LSTM`` / ``GRU`` /
``RNN``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import backend, init, memory, regularisers
from .cellspec import NONLINEARITIES, CellSpec, Options, cell_spec, parameter_suffix
from .module import Array, Module
from .profiling import nvtx_range
from .validation import (
    check_floating,
    check_proj_size,
    check_shape,
    lengths_array,
    positive_int,
    probability,
    shape_of,
    state_parts,
)

State = Any  # one array (RNN, GRU) or a pair (h, c) (LSTM)


class _Recurrent(Module):
    """RNN, LSTM and GRU: one path for every cell, reading the layer's :attr:`spec`.

    Parameters
    ----------
    input_size, hidden_size : I and H.
    num_layers : stacked layers; layer k > 0 reads the (D * H) outputs of layer k - 1.
    bias : whether b_ih and b_hh exist.
    batch_first : x and y are (B, T, .) instead of (T, B, .).
    dropout : probability of zeroing an output of every layer but the last, in training mode.
    bidirectional : run a second direction over the reversed sequence (D = 2).
    dtype : "float32" or "float64"; on "cuda" also "float16" and "bfloat16" (storage; the
        arithmetic is float32).
    device : "auto", "cpu" or "cuda" (see :func:`cuda_rnn.backend.resolve_device`).
    seed : seeds the weights and the dropout masks.
    algo : the CUDA step loop, "alternating", "graph", "persistent" or "auto" (see
        :mod:`cuda_rnn.cuda.algo`); ignored on the CPU.
    options : the cell's options (:class:`cuda_rnn.cellspec.Options`).

    Notes
    -----
    Input dtypes: x, the states, dy and the state gradients may be floating-point arrays of
    any precision; they are cast to the layer's dtype (a copy), as NumPy casts within a kind,
    and every output and gradient comes back in the layer's dtype (float64 data into a
    float32 layer computes in float32; float32 into float16 may overflow to inf). Integer,
    bool, complex, string and object arrays raise ValueError naming the argument and its
    dtype. The torch drop-ins in :mod:`cuda_rnn.torch` follow torch's rules instead.

    Raises
    ------
    MemoryError
        From a forward whose workspace (:func:`cuda_rnn.memory.forward_bytes`) exceeds the
        device's free memory (available RAM on "cpu"), before anything is allocated.
    """

    _cell = ""  # the cell of cuda_rnn.cellspec: "rnn", "lstm", "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
        algo: str = "alternating",
        **options: Any,
    ) -> None:
        self.spec: CellSpec = cell_spec(self._cell, **options)
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.num_layers = positive_int(num_layers, "num_layers")
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = probability(dropout, "dropout")
        self.bidirectional = bool(bidirectional)
        self._setup(dtype, device, seed)
        init.set_initial_constants(self)
        self.algo = self.backend.check_algo(algo)
        self.algo_used = ""  # what the last CUDA call ran, and why (see cuda_rnn.cuda.algo)
        self.algo_reason = ""
        self._saved: dict[str, Any] | None = None

    # ----------------------------------------------------------------- parameters
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """P' per direction: the size of h and y (proj_size when the LSTM projects, else H)."""
        return self.spec.output_size(self.hidden_size)

    def _names(self, layer: int, direction: int) -> tuple[str, ...]:
        suffix = parameter_suffix(layer, direction)
        return tuple(f"{p}{suffix}" for p in self.spec.parameters)

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return self.spec.layer_parameter_shapes(self.input_size, self.hidden_size,
                                                self.num_layers, self.num_directions, self.bias)

    def _weights(self, layer: int, direction: int) -> tuple[Array, ...]:
        return tuple(self._params.get(n) for n in self._names(layer, direction))

    def _clear_saved(self) -> None:
        self._saved = None

    # ----------------------------------------------------------------- input checks
    def _prepare_input(self, x: Any) -> tuple[Array, bool]:
        """Validate x and return it time-major (T, B, I) in the layer's dtype, plus unbatched."""
        shape = shape_of(x)
        if len(shape) not in (2, 3):
            layout = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
            raise ValueError(
                f"x: expected a 3-D array {layout} or a 2-D unbatched (T, input_size), "
                f"got shape {shape}"
            )
        if shape[-1] != self.input_size:
            raise ValueError(
                f"x: expected input_size={self.input_size} in the last dimension, got shape {shape}"
            )
        if 0 in shape:
            raise ValueError(f"x: expected non-empty time and batch dimensions, got shape {shape}")
        check_floating(x, "x", self._params_dtype())
        self._check_memory(shape)
        a = self.backend.asarray(x, self.dtype)
        unbatched = a.ndim == 2
        if unbatched:
            a = a[:, None, :]
        elif self.batch_first:
            a = a.transpose(1, 0, 2)
        return self.xp.ascontiguousarray(a), unbatched

    def _check_memory(self, shape: tuple[int, ...]) -> None:
        """MemoryError before a forward on x of ``shape`` whose workspace the device cannot
        hold."""
        if len(shape) == 2:
            steps, batch = shape[0], 1
        else:
            steps, batch = (shape[1], shape[0]) if self.batch_first else shape[:2]
        needed = memory.forward_bytes(
            steps, batch, self.input_size, self.hidden_size, self.spec.gates,
            len(self.spec.states), self.num_layers, self.num_directions,
            self._params_dtype().itemsize,
            **memory.variant_workspace(self.spec, self.hidden_size),
        )
        if needed > memory.CHECK_ABOVE_BYTES:
            memory.check_fits(needed, backend.available_memory(self.device),
                              f"{self!r}.forward with T={steps}, B={batch}")

    def _prepare_state(
        self, state: Any, batch: int, unbatched: bool, names: tuple[str, ...] | None = None
    ) -> list[Array]:
        """States as a list (h0[, c0]) of (L*D, B, H) arrays, zeros where None; ``names``
        (default h0[, c0]) name them in errors."""
        LD = self.num_layers * self.num_directions
        names = names or self.spec.initial_state_names
        state = state_parts(state, names)
        out = []
        for s, name, H in zip(state, names, self.spec.state_sizes(self.hidden_size)):
            if s is None:
                out.append(self.xp.zeros((LD, batch, H), dtype=self._params_dtype()))
                continue
            expected = (LD, H) if unbatched else (LD, batch, H)
            check_shape(s, expected, name)
            check_floating(s, name, self._params_dtype())
            a = self.backend.asarray(s, self.dtype)
            out.append(a[:, None, :] if unbatched else a)
        return out

    # ----------------------------------------------------------------- sequence helpers
    def _reverse(self, a: Array, rev_index: Array | None) -> Array:
        """Reverse time within each sequence's length (padding stays in place)."""
        if rev_index is None:
            return self.xp.ascontiguousarray(a[::-1])
        return a[rev_index, self.xp.arange(a.shape[1])[None, :]]

    def _reverse_index(self, lengths: np.ndarray | None, steps: int) -> Array | None:
        if lengths is None:
            return None
        t = np.arange(steps)[:, None]
        index = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
        return self.xp.asarray(index)

    def _regularised(self, layer: int, direction: int, steps: int,
                     batch: int) -> tuple[tuple[Array, ...], dict[str, Any], Array | None]:
        """One layer-direction's weights (W_hh masked by weight dropout), the cell functions'
        regulariser masks on the layer's device, and the W_hh mask (None without)."""
        drawn = regularisers.draw(self.spec, self.rng, steps, batch, self.hidden_size,
                                  self.training)
        weights, masks, w_mask = regularisers.apply(drawn, self._weights(layer, direction),
                                                    self.backend, self.dtype)
        return tuple(weights), masks, w_mask

    def _dropout_mask(self, shape: tuple[int, ...]) -> Array:
        # Drawn on the host from the layer's generator so that a seed gives the same masks
        # on every device (and a checkpoint of self.rng resumes them exactly).
        keep = self.rng.random(shape) >= self.dropout
        mask = keep / (1.0 - self.dropout)
        return self.backend.asarray(mask, self.dtype)

    # ----------------------------------------------------------------- forward / backward
    def __call__(self, x: Any, state: Any = None, lengths: Any = None) -> tuple[Array, State]:
        return self.forward(x, state, lengths)

    def forward(self, x: Any, state: Any = None, lengths: Any = None) -> tuple[Array, State]:
        """Run the stack over a sequence.

        Parameters
        ----------
        x : (T, B, input_size), or (B, T, input_size) with batch_first, or unbatched (T, input_size);
            floating point of any precision, cast to the layer's dtype.
        state : initial state(s) of shape (num_layers * D, B, H); None means zeros.
            LSTM takes a pair (h0, c0), either of which may be None.
        lengths : (B,) sequence lengths in [1, T] (PackedSequence semantics), or None.

        Returns
        -------
        y : (T, B, D * H) (batch-first or unbatched like x); zero past each sequence's end.
        state : h_n (RNN, GRU) or (h_n, c_n) (LSTM), each (num_layers * D, B, H).
        """
        x_tm, unbatched = self._prepare_input(x)
        T, B, _ = x_tm.shape
        if lengths is not None and unbatched:
            raise ValueError("lengths: expected None for unbatched 2-D input, got an array")
        lens = None if lengths is None else lengths_array(lengths, B, T)
        if lens is not None and np.all(lens == T):
            lens = None  # full-length sequences: the unmasked path computes the same function
        states = self._prepare_state(state, B, unbatched)
        lens_dev = None if lens is None else self.xp.asarray(lens, dtype=self.xp.int32)
        rev_index = self._reverse_index(lens, T)
        D = self.num_directions
        finals = [[None] * (self.num_layers * D) for _ in states]
        layers_saved = []
        inp = x_tm
        with nvtx_range(f"cuda_rnn/{self.spec.cell}/forward"):
            for layer in range(self.num_layers):
                outs, caches = [], []
                for d in range(D):
                    idx = layer * D + d
                    name = f"cuda_rnn/{self.spec.cell}/forward/l{layer}" + ("_reverse" if d else "")
                    weights, masks, w_mask = self._regularised(layer, d, T, B)
                    with nvtx_range(name):
                        xin = inp if d == 0 else self._reverse(inp, rev_index)
                        run = self.backend.forward(
                            self.spec, xin, tuple(s[idx] for s in states), weights, lens_dev,
                            algo=self.algo, name=name, masks=masks,
                        )
                    self.algo_used, self.algo_reason = run.algo_used, run.algo_reason
                    outs.append(run.y if d == 0 else self._reverse(run.y, rev_index))
                    caches.append((run.cache, w_mask))
                    for k, f in enumerate(run.states):
                        finals[k][idx] = f
                out = outs[0].copy() if D == 1 else self.xp.concatenate(outs, axis=2)
                mask = None
                if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                    mask = self._dropout_mask((T, B, D * self.output_size))
                    out = self.backend.multiply(out, mask)
                layers_saved.append((caches, mask))
                inp = out
        self._saved = {
            "layers": layers_saved, "rev_index": rev_index, "shape": (T, B),
            "unbatched": unbatched, "out_shape": shape_of(inp),
        }
        final = [self.xp.stack(f) for f in finals]
        if unbatched:
            y_out = inp[:, 0, :]
            final = [f[:, 0, :] for f in final]
        else:
            y_out = inp.transpose(1, 0, 2) if self.batch_first else inp
        return y_out, self._pack_state(final)

    def _pack_state(self, arrays: list[Array]) -> State:
        return arrays[0] if len(arrays) == 1 else tuple(arrays)

    def backward(self, dy: Any, dstate: Any = None) -> tuple[Array, State]:
        """Backpropagate through time over the last forward; accumulate into :attr:`grads`.

        Parameters
        ----------
        dy : gradient of the loss with respect to y, shaped like y (None means zeros).
        dstate : gradients with respect to the final state(s), shaped like them, or None.

        Returns
        -------
        dx : gradient with respect to x, shaped like x.
        dstate0 : gradient(s) with respect to the initial state(s), (num_layers * D, B, H).
        """
        if self._saved is None:
            raise RuntimeError("backward: called before any forward")
        saved = self._saved
        T, B = saved["shape"]
        unbatched = saved["unbatched"]
        D, H = self.num_directions, self.output_size
        y_shape = (T, D * H) if unbatched else (
            (B, T, D * H) if self.batch_first else (T, B, D * H)
        )
        if dy is None:
            g = self.xp.zeros((T, B, D * H), dtype=self._params_dtype())
        else:
            check_shape(dy, y_shape, "dy")
            check_floating(dy, "dy", self._params_dtype())
            g = self.backend.asarray(dy, self.dtype)
            g = g[:, None, :] if unbatched else (g.transpose(1, 0, 2) if self.batch_first else g)
        dstates = self._prepare_state(
            dstate, B, unbatched, tuple(f"d{n}_n" for n in self.spec.states)
        )
        dstate0 = [self.xp.empty_like(s) for s in dstates]
        rev_index = saved["rev_index"]
        with nvtx_range(f"cuda_rnn/{self.spec.cell}/backward"):
            for layer in range(self.num_layers - 1, -1, -1):
                caches, mask = saved["layers"][layer]
                if mask is not None:
                    g = self.backend.multiply(g, mask)
                dx_total = None
                for d in range(D):
                    idx = layer * D + d
                    name = f"cuda_rnn/{self.spec.cell}/backward/l{layer}" + ("_reverse" if d else "")
                    cache, w_mask = caches[d]
                    with nvtx_range(name):
                        dyd = g[:, :, d * H : (d + 1) * H]
                        dyd = self._reverse(dyd, rev_index) if d else self.xp.ascontiguousarray(dyd)
                        run = self.backend.backward(
                            self.spec, dyd, tuple(s[idx] for s in dstates), cache,
                            algo=self.algo, name=name,
                        )
                    self.algo_used, self.algo_reason = run.algo_used, run.algo_reason
                    dx = self._reverse(run.dx, rev_index) if d else run.dx
                    for k, s in enumerate(run.states):
                        dstate0[k][idx] = s
                    grads = list(run.grads)
                    if w_mask is not None:  # W_hh entered as W_hh * M: dL/dW_hh = dL/dW~ * M
                        grads[1] = self.backend.multiply(grads[1], w_mask)
                    for pname, pgrad in zip(self._names(layer, d), grads):
                        if pgrad is not None:
                            self.backend.add_into(self.grads[pname], pgrad)
                    dx_total = dx if dx_total is None else self.backend.add(dx_total, dx)
                g = dx_total
        if unbatched:
            return g[:, 0, :], self._pack_state([s[:, 0, :] for s in dstate0])
        dx_out = g.transpose(1, 0, 2) if self.batch_first else g
        return dx_out, self._pack_state(dstate0)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in _shown_options(self.spec).items())
        return (
            f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
            f"num_layers={self.num_layers}, bias={self.bias}, batch_first={self.batch_first}, "
            f"dropout={self.dropout}, bidirectional={self.bidirectional}{extra}, "
            f"dtype={self.dtype!r}, device={self.device!r})"
        )


class LSTM(_Recurrent):
    """Long short-term memory layer stack (gates i, f, g, o), like ``torch.nn.LSTM``.

    ``y, (h_n, c_n) = lstm(x, (h0, c0), lengths=None)``;
    ``dx, (dh0, dc0) = lstm.backward(dy, (dh_n, dc_n))``.

    Besides the arguments of every layer stack, the variants of
    :class:`cuda_rnn.cellspec.Options`, in any combination:

    proj_size : P > 0 gives h and y of size P through ``weight_hr_l{k}`` (P, H), exactly as
        torch.nn.LSTM(proj_size=P); c stays H.
    peephole : adds ``weight_ch_l{k}`` (3H,) = [w_ci; w_cf; w_co] ((2H,) without a forget gate).
    forget_gate : False runs the original LSTM, c_t = c_{t-1} + i * g (G = 3: i, g, o).
    forget_bias : a float sets the forget rows of every b_ih to it and of b_hh to 0 at init.
    layer_norm : normalise x W_ih^T and h W_hh^T over the G*H pre-activations and c over H,
        with ``ln_weight_ih_l{k}``, ``ln_weight_hh_l{k}`` (G*H,), ``ln_weight_c_l{k}`` (H,)
        (gains, starting at 1) and ``ln_bias_c_l{k}`` (H,) (starting at 0).
    zoneout, zoneout_cell, recurrent_dropout, weight_dropout : the regularisers of
        :class:`cuda_rnn.cellspec.Options` (training mode; zoneout's expectation in eval
        mode), masks drawn from :attr:`rng`.

    On "cuda" the variants run on the alternating and graph loops (the persistent kernels run
    only the plain cell; "auto" falls back and says why in :attr:`algo_reason`), layer_norm
    among them; weight dropout runs on every algo, zoneout and recurrent dropout on
    "alternating" and "graph".
    """

    _cell = "lstm"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
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
        algo: str = "alternating",
    ) -> None:
        check_proj_size(proj_size, hidden_size)
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype, device, seed, algo, proj_size=proj_size, peephole=peephole,
            forget_gate=forget_gate, forget_bias=forget_bias, layer_norm=layer_norm,
            zoneout=zoneout, zoneout_cell=zoneout_cell, recurrent_dropout=recurrent_dropout,
            weight_dropout=weight_dropout,
        )


class GRU(_Recurrent):
    """Gated recurrent unit layer stack (gates r, z, n), like ``torch.nn.GRU``.

    ``y, h_n = gru(x, h0, lengths=None)``; ``dx, dh0 = gru.backward(dy, dh_n)``.

    zoneout, recurrent_dropout, weight_dropout : as for :class:`LSTM` (recurrent dropout
        scales the input of the three recurrent products, not the z * h_{t-1} term).
    """

    _cell = "gru"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
        algo: str = "alternating",
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype, device, seed, algo, zoneout=zoneout, recurrent_dropout=recurrent_dropout,
            weight_dropout=weight_dropout,
        )


class RNN(_Recurrent):
    """Elman RNN layer stack, like ``torch.nn.RNN``, with nonlinearity "tanh", "relu" or
    "sigmoid" (the last is our addition, for the vanishing-gradient experiments).

    ``y, h_n = rnn(x, h0, lengths=None)``; ``dx, dh0 = rnn.backward(dy, dh_n)``.

    zoneout, recurrent_dropout, weight_dropout : as for :class:`LSTM`.
    """

    _cell = "rnn"
    NONLINEARITIES = NONLINEARITIES

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        dtype: Any = "float32",
        device: str = "auto",
        seed: int | None = None,
        algo: str = "alternating",
    ) -> None:
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype, device, seed, algo, nonlinearity=nonlinearity, zoneout=zoneout,
            recurrent_dropout=recurrent_dropout, weight_dropout=weight_dropout,
        )

    @property
    def nonlinearity(self) -> str:
        """"tanh", "relu" or "sigmoid"."""
        return self.spec.options.nonlinearity


def _shown_options(spec: CellSpec) -> dict[str, Any]:
    """The options a repr names: the RNN's nonlinearity, and every other one not at its
    default."""
    default = Options()
    return {k: v for k, v in spec.keywords.items()
            if k == "nonlinearity" or v != getattr(default, k)}


#: The layer class of each cell of :mod:`cuda_rnn.cellspec`.
LAYERS: dict[str, type[_Recurrent]] = {cls._cell: cls for cls in (RNN, LSTM, GRU)}


def make_layer(spec: CellSpec, input_size: int, hidden_size: int, **kwargs: Any) -> _Recurrent:
    """The layer stack of ``spec``'s cell with its options; ``kwargs`` as for the classes."""
    return LAYERS[spec.cell](input_size, hidden_size, **kwargs, **spec.keywords)
