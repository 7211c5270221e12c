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
they run in the weights' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import interop
from . import layers as _layers

__all__ = ["GRU", "LSTM", "RNN", "RecurrentFunction"]


@dataclass(frozen=True)
class _Call:
    """What one forward call needs besides tensors."""

    template: Any  # a cuda_rnn layer of the module's configuration, device and dtype
    names: tuple[str, ...]  # parameter names, in the order the weights are passed
    lengths: Any  # (B,) sequence lengths or None
    training: bool
    seed: int | None  # dropout generator seed, drawn from torch's generator


def _array(t: torch.Tensor | None) -> Any:
    # CUDA kernels index dense memory; .contiguous() is a no-op (no copy) for a dense tensor.
    return None if t is None else interop.as_array(t.contiguous())


class RecurrentFunction(torch.autograd.Function):
    """Autograd node running a cuda_rnn layer: forward and exact BPTT on shared memory.

    ``apply(call, x, h0, c0, *weights)`` returns ``(y, h_n)`` or, for an LSTM, ``(y, h_n, c_n)``;
    ``h0`` and ``c0`` may be None (zeros), ``c0`` is None for RNN and GRU.
    """

    @staticmethod
    def forward(ctx: Any, call: _Call, x: torch.Tensor, h0: torch.Tensor | None,
                c0: torch.Tensor | None, *weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        is_lstm = isinstance(call.template, _layers.LSTM)
        with interop.cuda_scope(x.device):
            layer = call.template.with_parameters(
                dict(zip(call.names, (_array(w) for w in weights)))
            )
            layer.train(call.training)
            if call.seed is not None:
                layer.rng = np.random.default_rng(call.seed)
            state = (_array(h0), _array(c0)) if is_lstm else _array(h0)
            y, final = layer(_array(x), state, lengths=call.lengths)
            finals = final if is_lstm else (final,)
            out = (interop.as_tensor(y), *(interop.as_tensor(f) for f in finals))
        ctx.layer = layer
        ctx.names = call.names
        ctx.is_lstm = is_lstm
        ctx.state_given = (h0 is not None, c0 is not None)
        ctx.grads_handed_out = False
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: torch.Tensor, *dfinal: torch.Tensor) -> tuple[Any, ...]:
        layer = ctx.layer
        if ctx.grads_handed_out:
            # A second backward (retain_graph=True): the layer accumulates into its grads,
            # which autograd already holds from the first; start from fresh zeros instead.
            layer.grads = {k: layer.xp.zeros_like(g) for k, g in layer.grads.items()}
        ctx.grads_handed_out = True
        with interop.cuda_scope(dy.device):
            darrays = tuple(_array(g) for g in dfinal)
            dx, dstate = layer.backward(_array(dy), darrays if ctx.is_lstm else darrays[0])
            dstates = dstate if ctx.is_lstm else (dstate,)
            dx_t = interop.as_tensor(dx)
            d0 = [interop.as_tensor(d) if given else None
                  for d, given in zip(dstates, ctx.state_given)]
            dweights = [interop.as_tensor(layer.grads[n]) for n in ctx.names]
        dc0 = d0[1] if ctx.is_lstm else None
        return (None, dx_t, d0[0], dc0, *dweights)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the kernels run in: autocast's on CUDA when it is on, else the weights'."""
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        return torch.get_autocast_dtype("cuda")
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError(
            f"input: expected dtype {weight.dtype} (the weights' dtype), got {x.dtype}; "
            f"convert the input or the module"
        )
    return weight.dtype


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


class _KernelRecurrent:
    """forward() shared by the three modules; mixed in before the torch.nn class."""

    _layer_cls: type

    def _kernel_layer(self, device: torch.device, dtype: torch.dtype,
                      params: dict[str, Any]) -> Any:
        """The cached template layer for (device, dtype), built on first use."""
        cache = self.__dict__.setdefault("_kernel_layers", {})
        key = (str(device), dtype)
        if key not in cache:
            config = interop.layer_config(self)
            blank = self._layer_cls(**config, dtype=interop.dtype_name(dtype),
                                    device=device.type)
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

    def forward(self, input: Any, hx: Any = None, *, lengths: Any = None) -> tuple[Any, Any]:
        """Run the stack like torch.nn.LSTM / GRU / RNN, on cuda_rnn's kernels.

        Parameters
        ----------
        input : (T, B, input_size), (B, T, input_size) with batch_first, unbatched
            (T, input_size), or a PackedSequence.
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
        dtype = _compute_dtype(x, weights[0])
        weights = [w.to(dtype) for w in weights]
        is_lstm = self._layer_cls is _layers.LSTM
        h0, c0 = (hx if hx is not None else (None, None)) if is_lstm else (hx, None)
        x, h0, c0 = (None if t is None else t.to(dtype) for t in (x, h0, c0))
        # Inside torch's device and stream, so the DLPack exchange of the weights needs no
        # cross-stream synchronisation and lands on the tensors' own GPU.
        with interop.cuda_scope(x.device):
            template = self._kernel_layer(
                x.device, dtype,
                dict(zip(self._flat_weights_names, (_array(w) for w in weights))))
        use_dropout = self.training and self.dropout > 0 and self.num_layers > 1
        seed = int(torch.randint(2**62, (1,)).item()) if use_dropout else None
        call = _Call(template, tuple(self._flat_weights_names), lengths, self.training, seed)
        y, *final = RecurrentFunction.apply(call, x, h0, c0, *weights)
        if packed is not None:
            y = _pack_like(y, lengths, packed, self.batch_first)
        return y, (tuple(final) if is_lstm else final[0])


class LSTM(_KernelRecurrent, nn.LSTM):
    """torch.nn.LSTM on cuda_rnn's kernels; same constructor, without ``proj_size``.

    Raises
    ------
    ValueError
        For ``proj_size`` other than 0.
    """

    _layer_cls = _layers.LSTM

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        interop.layer_config(self)  # raises for what the kernels lack (proj_size)


class GRU(_KernelRecurrent, nn.GRU):
    """torch.nn.GRU on cuda_rnn's kernels; same constructor."""

    _layer_cls = _layers.GRU


class RNN(_KernelRecurrent, nn.RNN):
    """torch.nn.RNN on cuda_rnn's kernels; same constructor, and ``nonlinearity`` may also be
    "sigmoid" (cuda_rnn's addition).

    Raises
    ------
    ValueError
        For a nonlinearity other than "tanh", "relu" or "sigmoid".
    """

    _layer_cls = _layers.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
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
