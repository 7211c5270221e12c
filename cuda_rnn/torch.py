"""torch.nn.LSTM / GRU / RNN drop-ins whose forward and backward run cuda_rnn's kernels.

Each class subclasses its torch.nn twin, so the constructor, parameters (torch Parameters with
PyTorch's names, shapes and initialisation), ``state_dict``, ``torch.save``, optimizers and
DistributedDataParallel behave exactly as with torch.nn.LSTM. Only ``forward`` differs: it
calls :class:`RecurrentFunction`, a ``torch.autograd.Function`` whose backward returns the
parameter gradients of cuda_rnn's exact BPTT. Tensors cross without copies: CPU tensors are
NumPy views (NumPy reference path), CUDA tensors are CuPy views through DLPack, run on
torch's current CUDA stream (CUDA kernels).

Under ``torch.autocast`` on CUDA, inputs and weights are cast to the autocast dtype, as
torch does for its own RNNs; on the CPU (whose NumPy path computes in float32 or float64)
they run in the weights' dtype, and float16 / bfloat16 modules compute on float32 copies,
their outputs and gradients rounded back to the module's dtype.

The autograd contract is torch.nn's (version-counter checks, freed graphs, retain_graph,
torch.func.grad), see :class:`RecurrentFunction`; what cannot hold raises an error that says
why: second-order gradients, vmap, forward-mode AD and torch.jit.script.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import init, interop
from . import layers as _layers
from .cellspec import REGULARISERS, SPECS, Options, cell_spec
from .cuda.algo import check_algo
from .validation import state_parts

__all__ = ["GRU", "LSTM", "RNN", "RecurrentFunction", "StateDtypeError"]


@dataclass
class _Call:
    """What one forward call needs besides tensors, and what it leaves for backward."""

    build: Callable[[dict[str, Any]], Any]  # parameter arrays -> the module's cuda_rnn layer
    names: tuple[str, ...]  # parameter names, in the order the weights are passed
    lengths: Any  # (B,) sequence lengths or None
    training: bool
    seed: int | None  # dropout generator seed, drawn from torch's generator
    compute: torch.dtype  # the dtype the kernels run in
    out_dtype: torch.dtype  # the dtype of the outputs
    empty: tuple[tuple[int, ...], ...] | None  # output shapes of an empty batch (no kernels)
    states: int  # recurrent states of the cell (h, c for LSTM)
    layer: Any = None  # the layer that ran the forward, holding what BPTT needs
    inputs: tuple[Any, ...] = ()  # shapes of x, the initial states, *weights; None where None
    backward_runs: int = 0


def _array(t: torch.Tensor | None, dtype: torch.dtype) -> Any:
    # .to() and .contiguous() return the tensor itself (no copy) for a dense one of that dtype;
    # CUDA kernels index dense memory.
    return None if t is None else interop.as_array(t.to(dtype).contiguous())


def _layer_state(parts: list[Any] | tuple[Any, ...]) -> Any:
    """One state per cell state as the layers and torch.nn take and return them: the array
    itself for one, a tuple for more (the LSTM's (h, c))."""
    return parts[0] if len(parts) == 1 else tuple(parts)


class RecurrentFunction(torch.autograd.Function):
    """Autograd node running a cuda_rnn layer: forward and exact BPTT on shared memory.

    ``apply(call, x, *states, *weights)`` returns ``(y, *final states)``: ``states`` are the
    cell's initial states (h0, and c0 for an LSTM), each None for zeros.

    What BPTT reads (x, the states and the weight matrices; not the biases, as torch.nn) is saved
    with ``ctx.save_for_backward``, so torch's checks hold as for its own nodes: an in-place
    change of one of them between forward and backward raises torch's version-counter error,
    and a second backward without ``retain_graph=True`` raises "Trying to backward through
    the graph a second time". The backward is itself a node
    (:class:`_BPTT`), so ``torch.func.grad`` works; second-order gradients raise
    :class:`NotImplementedError` (see :data:`SECOND_ORDER`).
    """

    @staticmethod
    def forward(call: _Call, x: torch.Tensor,
                *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        if call.empty is not None:
            return tuple(x.new_zeros(shape, dtype=call.out_dtype) for shape in call.empty)
        states, weights = tensors[: call.states], tensors[call.states :]
        with interop.cuda_scope(x.device):
            params = dict(zip(call.names, (_array(w, call.compute) for w in weights)))
            layer = call.build(params).with_parameters(params)
            layer.train(call.training)
            if call.seed is not None:
                layer.rng = np.random.default_rng(call.seed)
            state = _layer_state([_array(s, call.compute) for s in states])
            y, final = layer(_array(x, call.compute), state, lengths=call.lengths)
            finals = state_parts(final, layer.spec.states)
            out = tuple(interop.as_tensor(a).to(call.out_dtype) for a in (y, *finals))
        call.layer = layer
        return out

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        call, x, *tensors = inputs
        states, weights = tensors[: call.states], tensors[call.states :]
        read = [w for name, w in zip(call.names, weights) if not name.startswith("bias")]
        ctx.save_for_backward(x, *states, *read)
        call.inputs = tuple(None if t is None else t.shape for t in (x, *states, *weights))
        ctx.call = call

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, *dfinal: torch.Tensor) -> tuple[Any, ...]:
        # Reading saved_tensors is what raises for in-place changes and for a freed graph.
        saved = [t for t in ctx.saved_tensors if t is not None]
        grads = iter(_BPTT.apply(ctx.call, dy, *dfinal, *saved))
        return (None, *(None if shape is None else next(grads) for shape in ctx.call.inputs))

    @staticmethod
    def vmap(info: Any, in_dims: Any, *args: Any) -> Any:
        raise NotImplementedError(
            "cuda_rnn.torch: torch.func.vmap (and jacrev, jacfwd, hessian, which use it) is "
            "not supported: the kernels run one batch in NumPy or CUDA outside torch; put the "
            "batch in the batch dimension instead"
        )

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:
        raise NotImplementedError(
            "cuda_rnn.torch: forward-mode AD (torch.func.jvp, torch.autograd.forward_ad) is "
            "not supported: cuda_rnn computes reverse-mode BPTT only"
        )


#: Why second-order gradients stop: the message of the error they raise.
SECOND_ORDER = (
    "cuda_rnn.torch: second-order gradients (a backward through gradients made with "
    "create_graph=True, torch.func.grad of torch.func.grad, hessians) are not supported: "
    "the BPTT backward runs in cuda_rnn's NumPy or CUDA kernels outside autograd, so it has "
    "no derivative of its own; use torch.nn.LSTM / GRU / RNN for them (same state_dict)"
)


class _BPTT(torch.autograd.Function):
    """The backward of :class:`RecurrentFunction` as a node of its own.

    Under ``torch.func.grad`` its forward receives plain tensors whose memory NumPy and CuPy
    can read; differentiating it (second order) raises :data:`SECOND_ORDER`.
    ``apply(call, dy, *dfinal, *saved)`` returns the gradients of the given (non-None)
    inputs of the forward, in their order; ``saved`` (the forward's saved tensors)
    only ties the result to them, so that a second differentiation reaches this node.
    """

    @staticmethod
    def forward(call: _Call, dy: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dfinal = rest[: call.states]
        if call.empty is not None:
            return tuple(dy.new_zeros(shape) for shape in call.inputs if shape is not None)
        layer = call.layer
        if call.backward_runs:
            # Another backward over a retained graph: the layer accumulates into its grads,
            # which autograd already holds from the last one; start from fresh zeros instead.
            layer.grads = {k: layer.xp.zeros_like(g) for k, g in layer.grads.items()}
        call.backward_runs += 1
        with interop.cuda_scope(dy.device):
            darrays = tuple(_array(g, call.compute) for g in dfinal)
            dx, dstate = layer.backward(_array(dy, call.compute), _layer_state(darrays))
            dstates = state_parts(dstate, layer.spec.states)
            d0 = [d for d, shape in zip(dstates, call.inputs[1 : 1 + call.states])
                  if shape is not None]
            grads = [dx, *d0, *(layer.grads[n] for n in call.names)]
            # In the compute dtype: autograd casts each to its input's dtype.
            return tuple(interop.as_tensor(g) for g in grads)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise NotImplementedError(SECOND_ORDER)


@torch.compiler.disable
def _run(call: _Call, *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """:meth:`RecurrentFunction.apply`, run eagerly under torch.compile: the kernels read
    tensor memory through NumPy and CuPy, which the compiler's fake tensors do not have."""
    return RecurrentFunction.apply(call, *tensors)


class StateDtypeError(ValueError, RuntimeError):
    """An initial state whose dtype is not the weights': a RuntimeError, as torch.nn.LSTM /
    GRU / RNN raise for it, and a ValueError, as every input check of cuda_rnn."""


#: Module dtypes that the CPU (NumPy) path computes in float32, rounding the results back.
CPU_UPCAST = (torch.float16, torch.bfloat16)


def _dtypes(x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.dtype, torch.dtype]:
    """(the dtype the kernels run in, the outputs' dtype) for an input and the weights.

    Autocast's on CUDA when it is on; float32 for float16 / bfloat16 modules on the CPU,
    whose NumPy path computes in float32 or float64; else the weights'.
    """
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        return dtype, dtype
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"input: expected dtype {weight.dtype} (the weights' dtype), got {x.dtype}; "
            f"convert the input or the module"
        )
    if not x.is_cuda and weight.dtype in CPU_UPCAST:
        return torch.float32, weight.dtype
    return weight.dtype, weight.dtype


def _check_state_dtypes(states: dict[str, torch.Tensor | None], weight: torch.Tensor) -> None:
    """Raise :class:`StateDtypeError` for a state of another dtype than the weights' (outside
    autocast, which casts them as it casts the input)."""
    for name, s in states.items():
        if (s is not None and s.dtype != weight.dtype
                and not torch.is_autocast_enabled(s.device.type)):
            raise StateDtypeError(
                f"{name}: expected dtype {weight.dtype} (the weights' dtype), got {s.dtype}; "
                f"convert the state or the module"
            )


def _pack_like(y: torch.Tensor, lengths: torch.Tensor, packed: PackedSequence,
               batch_first: bool) -> PackedSequence:
    """Pack a padded output in the same order and batch sizes as the packed input."""
    order = packed.sorted_indices
    if order is not None:
        y = y.index_select(0 if batch_first else 1, order)
        lengths = lengths.index_select(0, order.cpu())
    data = pack_padded_sequence(y, lengths, batch_first=batch_first, enforce_sorted=True).data
    return PackedSequence(data, packed.batch_sizes, packed.sorted_indices,
                          packed.unsorted_indices)


def _default_algo(layer_cls: type) -> str:
    """The ``algo=`` default of a cuda_rnn layer class's constructor."""
    return inspect.signature(layer_cls).parameters["algo"].default


class _KernelRecurrent:
    """forward() and ``algo`` shared by the three modules; mixed in before the torch.nn class."""

    _layer_cls: type

    @property
    def algo(self) -> str:
        """The CUDA step loop of the cuda_rnn layer (see :class:`cuda_rnn.LSTM`)."""
        return self._algo

    @algo.setter
    def algo(self, value: str) -> None:
        self.__dict__["_algo"] = check_algo(value)
        self.__dict__.pop("_kernel_layers", None)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        for name in REGULARISERS:
            if getattr(self, name, 0.0):
                text += f", {name}={getattr(self, name)!r}"
        if self.algo != _default_algo(self._layer_cls):
            text += f", algo={self.algo!r}"
        return text

    def _set_options(self, **options: Any) -> Any:
        """Check the cuda_rnn options (as the layer would) and keep them as attributes, where
        :func:`cuda_rnn.interop.layer_config` reads them; returns the spec."""
        spec = cell_spec(self._layer_cls._cell, **options)
        for name in options:
            setattr(self, name, getattr(spec.options, name))
        self._options = spec.options
        return spec

    def _kernel_layer(self, device: torch.device, dtype: torch.dtype,
                      params: dict[str, Any]) -> Any:
        """The cached template layer for (device, dtype), built on first use."""
        cache = self.__dict__.setdefault("_kernel_layers", {})
        key = (str(device), dtype)
        if key not in cache:
            config = interop.layer_config(self)
            blank = self._layer_cls(**config, dtype=interop.dtype_name(dtype),
                                    device=device.type, algo=self.algo)
            # Rebinding drops the randomly initialised arrays the constructor made.
            cache[key] = blank.with_parameters(params)
        return cache[key]

    def _apply(self, fn: Any, recurse: bool = True) -> Any:
        # .to() / .cuda() / .double() replace the weights: forget the layers bound to the old ones.
        self.__dict__.pop("_kernel_layers", None)
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict[str, Any]:
        # The template layers hold a Python module reference (their backend) and views of the
        # weights; torch.save and deepcopy rebuild them on the next forward instead.
        state = super().__getstate__()
        state.pop("_kernel_layers", None)
        return state

    def __prepare_scriptable__(self) -> Any:
        # torch.jit.script calls this on every submodule before compiling it.
        raise RuntimeError(
            f"cuda_rnn.torch.{type(self).__name__} cannot be compiled by torch.jit.script: its "
            f"forward runs cuda_rnn's kernels from Python (a torch.autograd.Function), which "
            f"TorchScript cannot compile; torch.compile runs it (the kernel call stays eager), "
            f"and torch.jit.trace records it as a Python call (it runs, but cannot be saved)"
        )

    def _empty_batch_shapes(self, x: torch.Tensor, states: dict[str, torch.Tensor | None],
                            unbatched: bool) -> tuple[tuple[int, ...], ...] | None:
        """The output shapes for an empty batch, as torch.nn returns them; None for B > 0.

        Raises
        ------
        ValueError
            For a state whose shape does not match the empty batch.
        """
        if unbatched or x.shape[0 if self.batch_first else 1] != 0:
            return None
        D = 2 if self.bidirectional else 1
        T = x.shape[1 if self.batch_first else 0]
        P = getattr(self, "proj_size", 0) or self.hidden_size
        shapes = []
        for name, s in states.items():
            shape = (self.num_layers * D, 0, P if name == "h0" else self.hidden_size)
            if s is not None and tuple(s.shape) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {tuple(s.shape)}")
            shapes.append(shape)
        y_shape = (0, T, D * P) if self.batch_first else (T, 0, D * P)
        return (y_shape, *shapes)

    def forward(self, input: Any, hx: Any = None, *, lengths: Any = None) -> tuple[Any, Any]:
        """Run the stack like torch.nn.LSTM / GRU / RNN, on cuda_rnn's kernels.

        Parameters
        ----------
        input : (T, B, input_size), (B, T, input_size) with batch_first, unbatched
            (T, input_size), or a PackedSequence. B may be 0 (empty outputs, like torch.nn).
        hx : initial state(s) (num_layers * D, B, H); a pair (h0, c0) for LSTM; None for zeros.
        lengths : (B,) sequence lengths for padded input (cuda_rnn's extension): outputs are
            zero past each sequence's end and h_n is the state at its last valid step.

        Returns
        -------
        output : like torch.nn's (a PackedSequence for packed input).
        h_n, or (h_n, c_n) for LSTM.

        Raises
        ------
        ValueError
            For lengths together with a PackedSequence, an input dtype unlike the weights'
            (outside autocast), or shapes the layer rejects.
        StateDtypeError
            For a state dtype unlike the weights' (outside autocast); also a RuntimeError.
        """
        packed = input if isinstance(input, PackedSequence) else None
        if packed is not None:
            if lengths is not None:
                raise ValueError(
                    "lengths: expected None with a PackedSequence input (it carries its own), "
                    f"got {type(lengths).__name__}"
                )
            x, lengths = pad_packed_sequence(packed, batch_first=self.batch_first)
        else:
            x = input
        weights = [getattr(self, name) for name in self._flat_weights_names]
        compute, out_dtype = _dtypes(x, weights[0])
        names = SPECS[self._layer_cls._cell].initial_state_names
        states = dict(zip(names, state_parts(hx, names)))
        _check_state_dtypes(states, weights[0])
        use_dropout = self.training and self.dropout > 0 and self.num_layers > 1
        regularised = self.training and any(getattr(self, n, 0.0) > 0 for n in REGULARISERS)
        seed = (int(torch.randint(2**62, (1,)).item()) if use_dropout or regularised
                else None)
        call = _Call(
            build=functools.partial(self._kernel_layer, x.device, compute),
            names=tuple(self._flat_weights_names), lengths=lengths, training=self.training,
            seed=seed, compute=compute, out_dtype=out_dtype,
            empty=self._empty_batch_shapes(x, states, x.dim() == 2), states=len(names),
        )
        y, *final = _run(call, x, *states.values(), *weights)
        if packed is not None:
            y = _pack_like(y, lengths, packed, self.batch_first)
        return y, _layer_state(final)


class LSTM(_KernelRecurrent, nn.LSTM):
    """torch.nn.LSTM on cuda_rnn's kernels; same constructor (``proj_size`` included), plus,
    keyword only, the LSTM variants of :class:`cuda_rnn.LSTM` and ``algo=``.

    Parameters
    ----------
    *args, **kwargs : torch.nn.LSTM's.
    layer_norm : the layer-normalised LSTM of :class:`cuda_rnn.LSTM` (``ln_weight_ih_l{k}``
        and the rest as torch Parameters).
    peephole : the gates read the cell through diagonal weights ``weight_ch_l{k}`` (torch
        Parameters of shape ((G-1) * hidden_size,), initialised like the others).
    forget_gate : False for the original LSTM without a forget gate: W_ih, W_hh and the
        biases hold the three gates i, g, o (3 * hidden_size rows).
    forget_bias : None keeps torch's initialisation; a float sets the forget gate's rows of
        every ``bias_ih`` to it and of ``bias_hh`` to 0.
    zoneout, zoneout_cell, recurrent_dropout, weight_dropout : the regularisers of
        :class:`cuda_rnn.LSTM` (training mode), their masks drawn from a seed that torch's
        generator gives each forward.
    algo : the CUDA step loop of the cuda_rnn layer, "alternating", "graph", "persistent" or
        "auto" (see :class:`cuda_rnn.LSTM`); ignored on the CPU.

    Raises
    ------
    ValueError
        For an unknown ``algo``, or a variant option the LSTM does not take (as
        :class:`cuda_rnn.LSTM` raises).
    """

    _layer_cls = _layers.LSTM

    def __init__(self, *args: Any, peephole: bool = False, forget_gate: bool = True,
                 forget_bias: float | None = None, layer_norm: bool = False,
                 zoneout: float = 0.0, zoneout_cell: float = 0.0,
                 recurrent_dropout: float = 0.0, weight_dropout: float = 0.0,
                 algo: str = _default_algo(_layers.LSTM),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = self._set_options(
            proj_size=self.proj_size, peephole=peephole, forget_gate=forget_gate,
            forget_bias=forget_bias, layer_norm=layer_norm, zoneout=zoneout,
            zoneout_cell=zoneout_cell, recurrent_dropout=recurrent_dropout,
            weight_dropout=weight_dropout)
        if spec.options.beyond_torch_lstm:
            self._variant_parameters(spec)
        with torch.no_grad():
            for name, rows, value in init.initial_constants(
                    spec, self._flat_weights_names, self.hidden_size, self.bias):
                getattr(self, name)[rows] = value
        self.algo = algo

    def _variant_parameters(self, spec: Any) -> None:
        """Replace torch.nn.LSTM's parameters by the variant's (cuda_rnn's names and shapes)
        and initialise them as torch.nn.LSTM does (the constants the options fix come after,
        from :func:`cuda_rnn.init.initial_constants`)."""
        D = 2 if self.bidirectional else 1
        shapes = spec.layer_parameter_shapes(self.input_size, self.hidden_size,
                                             self.num_layers, D, self.bias)
        like = self.weight_ih_l0
        for name in self._flat_weights_names:
            delattr(self, name)
        for name, shape in shapes.items():
            setattr(self, name, nn.Parameter(torch.empty(shape, dtype=like.dtype,
                                                         device=like.device)))
        self._flat_weights_names = list(shapes)
        per_direction = len(shapes) // (self.num_layers * D)
        names = list(shapes)
        self._all_weights = [names[k : k + per_direction]
                             for k in range(0, len(names), per_direction)]
        self._init_flat_weights()
        self.reset_parameters()

    def flatten_parameters(self) -> None:
        """torch.nn.LSTM's, except for the variants, which cuDNN cannot run: their weights
        have no cuDNN layout to be flattened into."""
        # torch.nn.LSTM's own __init__ calls this before the options are set: plain then.
        if getattr(self, "_options", Options()).beyond_torch_lstm:
            return
        super().flatten_parameters()

    def extra_repr(self) -> str:
        text = super().extra_repr()
        defaults = Options()
        for name in ("peephole", "forget_gate", "forget_bias", "layer_norm"):
            if getattr(self, name) != getattr(defaults, name):
                text += f", {name}={getattr(self, name)!r}"
        return text


class GRU(_KernelRecurrent, nn.GRU):
    """torch.nn.GRU on cuda_rnn's kernels; same constructor, plus, keyword only, ``zoneout``,
    ``recurrent_dropout``, ``weight_dropout`` and ``algo=`` (see :class:`LSTM`).

    Raises
    ------
    ValueError
        For an unknown ``algo`` or a probability outside [0, 1).
    """

    _layer_cls = _layers.GRU

    def __init__(self, *args: Any, zoneout: float = 0.0, recurrent_dropout: float = 0.0,
                 weight_dropout: float = 0.0, algo: str = _default_algo(_layers.GRU),
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._set_options(zoneout=zoneout, recurrent_dropout=recurrent_dropout,
                          weight_dropout=weight_dropout)
        self.algo = algo


class RNN(_KernelRecurrent, nn.RNN):
    """torch.nn.RNN on cuda_rnn's kernels; same constructor, and ``nonlinearity`` may also be
    "sigmoid" (cuda_rnn's addition); plus, keyword only, ``zoneout``, ``recurrent_dropout``,
    ``weight_dropout`` and ``algo=`` (see :class:`LSTM`).

    Raises
    ------
    ValueError
        For a nonlinearity other than "tanh", "relu" or "sigmoid", an unknown ``algo`` or a
        probability outside [0, 1).
    """

    _layer_cls = _layers.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None, *, zoneout: float = 0.0, recurrent_dropout: float = 0.0,
                 weight_dropout: float = 0.0,
                 algo: str = _default_algo(_layers.RNN)) -> None:
        if nonlinearity not in _layers.RNN.NONLINEARITIES:
            raise ValueError(
                f"nonlinearity: expected one of {_layers.RNN.NONLINEARITIES}, "
                f"got {nonlinearity!r}"
            )
        # torch.nn.RNN knows only tanh and relu; its mode string matters to its own forward
        # alone, which this class replaces.
        super().__init__(input_size, hidden_size, num_layers, "tanh", bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity
        self._set_options(zoneout=zoneout, recurrent_dropout=recurrent_dropout,
                          weight_dropout=weight_dropout)
        self.algo = algo
