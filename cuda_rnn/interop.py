"""PyTorch interop: weights in and out of torch.nn.RNN / LSTM / GRU, and zero-copy tensor views.

torch stays optional: it is imported inside these functions only, so ``import cuda_rnn`` never
imports it. CPU tensors are viewed as NumPy arrays (``Tensor.numpy`` shares memory) and CUDA
tensors as CuPy arrays through DLPack; both directions share memory, never copy.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from .cellspec import SPECS, Options
from .layers import LAYERS

Layer = Any  # a cuda_rnn.RNN, LSTM or GRU
Tensor = Any  # a torch.Tensor (torch is imported lazily)

_OPTIONS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
            "bidirectional")


def _torch_classes() -> dict[type, type]:
    """torch.nn class -> cuda_rnn layer class (torch.nn names them as the cells' titles)."""
    import torch

    return {getattr(torch.nn, spec.title): LAYERS[spec.cell] for spec in SPECS.values()}


def layer_class(module: Any) -> type:
    """The cuda_rnn layer class (LSTM, GRU or RNN) matching a torch.nn module.

    Raises
    ------
    ValueError
        For a module that is not a torch.nn.RNN, LSTM or GRU (or a subclass of one).
    """
    for torch_cls, cls in _torch_classes().items():
        if isinstance(module, torch_cls):
            return cls
    raise ValueError(
        f"module: expected a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, "
        f"got {type(module).__name__}"
    )


def layer_config(module: Any) -> dict[str, Any]:
    """Constructor keywords of the cuda_rnn layer equivalent to a torch.nn RNN module.

    Raises
    ------
    ValueError
        For a module type that cuda_rnn does not support.
    """
    cls = layer_class(module)
    default = Options()
    config = {name: getattr(module, name) for name in _OPTIONS}
    # torch.nn.LSTM has proj_size only; cuda_rnn.torch.LSTM has every variant.
    config.update({name: getattr(module, name, getattr(default, name))
                   for name in SPECS[cls._cell].keywords})
    return config


def dtype_name(dtype: Any) -> str:
    """The cuda_rnn name of a torch dtype: torch.float32 -> "float32"."""
    return str(dtype).removeprefix("torch.")


def as_array(tensor: Tensor) -> Any:
    """A NumPy (CPU) or CuPy (CUDA) array sharing the tensor's memory, detached from autograd.

    On CUDA, call it inside :func:`cuda_scope` so that DLPack hands over on torch's current
    stream and nothing waits.

    Raises
    ------
    ValueError
        For a tensor on a device other than CPU or CUDA.
    """
    t = tensor.detach()
    if t.device.type == "cpu":
        return t.numpy()
    if t.device.type == "cuda":
        import cupy

        return cupy.from_dlpack(t)
    raise ValueError(f"tensor: expected a CPU or CUDA tensor, got device {t.device}")


def as_tensor(array: Any) -> Tensor:
    """A torch tensor sharing the memory of a NumPy or CuPy array."""
    import numpy as np
    import torch

    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.from_dlpack(array)


@contextlib.contextmanager
def cuda_scope(device: Any) -> Iterator[None]:
    """Make CuPy run on a torch device's GPU and on torch's current stream there.

    Kernels launched inside then queue behind torch's own work on that stream, so no
    synchronisation is needed in either direction. A CPU device makes this a no-op.
    """
    if device.type != "cuda":
        yield
        return
    import cupy
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    with cupy.cuda.Device(index), _cupy_stream(torch.cuda.current_stream(index), index):
        yield


def _cupy_stream(stream: Any, index: int) -> Any:
    """CuPy's view of a torch CUDA stream (no new stream is created)."""
    import cupy

    # CuPy 14 deprecates ExternalStream in favour of Stream.from_external, which takes any
    # object with __cuda_stream__ (torch streams have it in recent releases).
    if hasattr(cupy.cuda.Stream, "from_external") and hasattr(stream, "__cuda_stream__"):
        return cupy.cuda.Stream.from_external(stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return cupy.cuda.ExternalStream(stream.cuda_stream, index)


def from_torch(module: Any, device: str | None = None) -> Layer:
    """A cuda_rnn layer computing the same function as a torch.nn.RNN, LSTM or GRU.

    The weights are copied, so the two objects are independent afterwards. The layer takes
    the module's options, dtype and training flag.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU (or a subclass, such as
        cuda_rnn.torch.LSTM).
    device : "cpu", "cuda" or "auto"; None means the device the module's weights are on.

    Raises
    ------
    ValueError
        For an unsupported module type or option (see :func:`layer_config`), or a dtype the
        target device does not support.
    """
    cls = layer_class(module)
    config = layer_config(module)
    first = next(iter(module.parameters()))
    layer = cls(**config, dtype=dtype_name(first.dtype),
                device=first.device.type if device is None else device)
    source = "cpu" if layer.device == "cpu" else first.device
    layer.load_state_dict(
        {name: as_array(p.detach().to(source)) for name, p in module.named_parameters()}
    )
    return layer.train(module.training)


def to_torch(layer: Layer) -> Any:
    """A torch.nn.RNN, LSTM or GRU computing the same function as a cuda_rnn layer.

    The weights are copied onto a module of the layer's dtype, on the current CUDA device
    for a "cuda" layer and on the CPU otherwise; the training flag is carried over.

    Raises
    ------
    ValueError
        For a layer that is not a cuda_rnn RNN, LSTM or GRU, an RNN whose nonlinearity
        torch.nn.RNN lacks ("sigmoid"; cuda_rnn.torch.RNN has it), or an LSTM with peepholes,
        without a forget gate or with layer norm (cuda_rnn.torch.LSTM has them). proj_size
        carries over; forget_bias, an initialisation, is in the copied biases; the
        regularisers are not carried (torch.nn has none of them).
    """
    import torch

    classes = {cls: torch_cls for torch_cls, cls in _torch_classes().items()}
    torch_cls = classes.get(type(layer))
    if torch_cls is None:
        raise ValueError(
            f"layer: expected a cuda_rnn RNN, LSTM or GRU, got {type(layer).__name__}"
        )
    config = {name: getattr(layer, name) for name in _OPTIONS}
    if torch_cls is torch.nn.RNN:
        if layer.nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"layer.nonlinearity: expected 'tanh' or 'relu' for torch.nn.RNN, "
                f"got {layer.nonlinearity!r} (cuda_rnn.torch.RNN supports it)"
            )
    options = layer.spec.options
    if torch_cls is torch.nn.LSTM:
        if options.beyond_torch_lstm:
            raise ValueError(
                f"layer: expected an LSTM without peepholes, with a forget gate and without "
                f"layer norm for torch.nn.LSTM, got peephole={options.peephole}, "
                f"forget_gate={options.forget_gate}, layer_norm={options.layer_norm} "
                "(cuda_rnn.torch.LSTM supports them)")
        config["proj_size"] = options.proj_size
    elif torch_cls is torch.nn.RNN:
        config["nonlinearity"] = options.nonlinearity
    device = "cuda" if layer.device == "cuda" else "cpu"
    module = torch_cls(**config, device=device, dtype=getattr(torch, layer.dtype))
    with torch.no_grad(), cuda_scope(torch.device(device)):
        for name, array in layer.parameters().items():
            getattr(module, name).copy_(as_tensor(array))
    return module.train(layer.training)

