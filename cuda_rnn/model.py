"""A Linear layer, token encoders (one-hot, embedding) and :class:`SequenceModel`, which chains
input encoder -> recurrent stack -> Linear head so a task needs no hand-written glue.

Every part follows the layers' conventions: ``forward`` keeps what ``backward`` needs,
``backward`` accumulates into ``grads``, ``parameters()`` returns the live arrays. The model's
parameter names are the parts' names with a prefix: ``embed.weight``, ``rnn.weight_ih_l0``,
``head.weight``, ``head.bias``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import init
from .backend import to_numpy
from .cellspec import MODEL_CELLS, model_cell_spec
from .layers import GRU, LSTM, RNN, make_layer
from .module import Module
from .validation import (
    check_floating,
    check_shape,
    check_state_dict,
    choice,
    positive_int,
    probability,
)

Array = Any  # a NumPy array on "cpu", a CuPy array on "cuda"
State = Any  # h (RNN, GRU) or (h, c) (LSTM), each (num_layers, B, H)

CELLS = MODEL_CELLS
INPUT_KINDS = ("dense", "onehot", "embedding")


def make_recurrent(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    dropout: float = 0.0,
    dtype: str = "float32",
    device: str = "auto",
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> LSTM | GRU | RNN:
    """The layer stack for a cell name in :data:`CELLS` ("rnn-tanh" is an RNN with tanh), with
    the cell's ``options`` of :class:`cuda_rnn.cellspec.Options` (the LSTM variants).

    Raises
    ------
    ValueError
        For an option the cell does not take.
    """
    spec = model_cell_spec(cell, **(options or {}))
    return make_layer(spec, input_size, hidden_size, num_layers=num_layers, dropout=dropout,
                      dtype=dtype, device=device, seed=seed)


class Linear(Module):
    """``y = x W^T + b`` over the last axis of x, with W (out, in) initialised like PyTorch's
    ``nn.Linear``: U(-1/sqrt(in), 1/sqrt(in)) for W and b.

    y (and the dx of backward) come in the compute dtype of the storage dtype (float32 for
    the 16-bit dtypes), the dtype a loss computes in; gradients are accumulated into the
    storage dtype, rounded once.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: str = "float32",
        device: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.has_bias = bool(bias)
        self._setup(dtype, device, seed)
        self._x: Array | None = None

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.has_bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def _initial(self, shape: tuple[int, ...]) -> Array:
        return init.uniform(self.rng, 1.0 / np.sqrt(self.in_features), shape, self.dtype,
                            self.device)

    def _clear_saved(self) -> None:
        self._x = None

    def forward(self, x: Array) -> Array:
        """(..., in_features) -> (..., out_features)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected in_features={self.in_features} in the last dimension, "
                f"got shape {tuple(x.shape)}"
            )
        check_floating(x, "x", self._params["weight"].dtype)
        compute = self.backend.compute
        self._x = x
        y = compute(x) @ compute(self._params["weight"]).T
        if "bias" in self._params:
            y += compute(self._params["bias"])
        return y

    __call__ = forward

    def backward(self, dy: Array) -> Array:
        """Gradient with respect to the last forward's x; accumulates dW (and db)."""
        if self._x is None:
            raise RuntimeError("backward: called before any forward")
        check_shape(dy, tuple(self._x.shape[:-1]) + (self.out_features,), "dy")
        check_floating(dy, "dy", self._params["weight"].dtype)
        compute = self.backend.compute
        flat_dy = compute(dy).reshape(-1, self.out_features)
        x = compute(self._x).reshape(-1, self.in_features)
        self.backend.add_into(self.grads["weight"], flat_dy.T @ x)
        if "bias" in self.grads:
            self.backend.add_into(self.grads["bias"], flat_dy.sum(axis=0))
        return compute(dy) @ compute(self._params["weight"])


def _check_tokens(tokens: Array, vocab: int) -> None:
    if tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens: expected an integer dtype, got {tokens.dtype}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= vocab):
        raise ValueError(
            f"tokens: expected ids in [0, {vocab}), got min {int(tokens.min())} "
            f"and max {int(tokens.max())}"
        )


class OneHot:
    """Integer tokens (...) -> one-hot vectors (..., vocab) of ``dtype``; no parameters."""

    def __init__(self, vocab: int, dtype: str, xp: Any) -> None:
        self.vocab = positive_int(vocab, "vocab")
        self._eye = xp.eye(self.vocab, dtype=dtype)

    def forward(self, tokens: Array) -> Array:
        """Look up one row of the identity per token."""
        _check_tokens(tokens, self.vocab)
        return self._eye[tokens]


class Embedding(Module):
    """Integer tokens (...) -> learned vectors (..., dim); weight (vocab, dim) ~ N(0, 1) like
    PyTorch's ``nn.Embedding``.

    Backward forms the weight gradient as one_hot(tokens)^T dy, one GEMM on either backend
    (in the compute dtype, accumulated into the storage dtype), which suits the small
    vocabularies (characters, symbols) of the tasks here.
    """

    def __init__(
        self, vocab: int, dim: int, dtype: str = "float32", device: str = "auto",
        seed: int | None = None,
    ) -> None:
        self.vocab = positive_int(vocab, "vocab")
        self.dim = positive_int(dim, "dim")
        self._setup(dtype, device, seed)
        self._eye = self.xp.eye(self.vocab, dtype=self.backend.compute_dtype(self.dtype))
        self._tokens: Array | None = None

    def _expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.vocab, self.dim)}

    def _initial(self, shape: tuple[int, ...]) -> Array:
        return self.backend.asarray(self.rng.standard_normal(shape), self.dtype)

    def _clear_saved(self) -> None:
        self._tokens = None

    def forward(self, tokens: Array) -> Array:
        """Look up one row of the weight per token."""
        _check_tokens(tokens, self.vocab)
        self._tokens = tokens
        return self._params["weight"][tokens]

    def backward(self, dy: Array) -> None:
        """Accumulate the weight gradient for the last forward's tokens."""
        if self._tokens is None:
            raise RuntimeError("backward: called before any forward")
        check_shape(dy, tuple(self._tokens.shape) + (self.dim,), "dy")
        onehot = self._eye[self._tokens.reshape(-1)]
        dy = self.backend.compute(dy).reshape(-1, self.dim)
        self.backend.add_into(self.grads["weight"], onehot.T @ dy)


class SequenceModel:
    """Input encoder -> recurrent stack -> Linear head, applied at every time step.

    Parameters
    ----------
    cell : one of :data:`CELLS`.
    input_size : features per step ("dense") or vocabulary size ("onehot", "embedding").
    hidden_size, num_layers, dropout : of the recurrent stack.
    output_size : units of the Linear head (classes, or regression targets).
    input_kind : "dense" takes (T, B, input_size) floats (any precision, cast to ``dtype``;
        other dtypes are a ValueError); "onehot" and "embedding" take (T, B) integer tokens.
    embed_dim : width of the embedding (only for "embedding"; defaults to hidden_size).
    dtype, device : as for the layers.
    seed : one seed from which every part's initial weights (and the dropout stream) derive.
    options : the cell's options beyond its name, the LSTM's ``proj_size``, ``peephole``,
        ``forget_gate`` and ``forget_bias`` (see :class:`cuda_rnn.LSTM`); None for none. With
        a projection the head reads the proj_size outputs.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        output_size: int,
        num_layers: int = 1,
        input_kind: str = "dense",
        embed_dim: int | None = None,
        dropout: float = 0.0,
        dtype: str = "float32",
        device: str = "auto",
        seed: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        choice(input_kind, "input_kind", INPUT_KINDS)
        choice(cell, "cell", CELLS)
        probability(dropout, "dropout")
        if input_kind == "embedding":
            embed_dim = positive_int(hidden_size if embed_dim is None else embed_dim, "embed_dim")
        elif embed_dim is not None:
            raise ValueError(f"embed_dim: expected None for input_kind={input_kind!r}, "
                             f"got {embed_dim!r}")
        self.config = dict(
            cell=cell, input_size=int(input_size), hidden_size=int(hidden_size),
            output_size=int(output_size), num_layers=int(num_layers), input_kind=input_kind,
            embed_dim=embed_dim, dropout=float(dropout), dtype=str(dtype), device=str(device),
            options=dict(options or {}),
        )
        seeds = np.random.SeedSequence(seed).generate_state(3) if seed is not None else [None] * 3
        rnn_in = input_size if input_kind != "embedding" else embed_dim
        self.rnn = make_recurrent(
            cell, rnn_in, hidden_size, num_layers, dropout, dtype, device,
            None if seed is None else int(seeds[0]), options,
        )
        self.device, self.dtype, self.xp = self.rnn.device, self.rnn.dtype, self.rnn.xp
        self.config["device"] = self.device
        self.head = Linear(self.rnn.output_size, output_size, dtype=self.dtype,
                           device=self.device, seed=None if seed is None else int(seeds[1]))
        self.embed: Embedding | None = None
        self.onehot: OneHot | None = None
        if input_kind == "embedding":
            self.embed = Embedding(input_size, embed_dim, self.dtype, self.device,
                                   None if seed is None else int(seeds[2]))
        elif input_kind == "onehot":
            self.onehot = OneHot(input_size, self.rnn.backend.compute_dtype(self.dtype),
                                 self.xp)
        self.input_size = int(input_size)

    def _parts(self) -> dict[str, Any]:
        parts = {"rnn": self.rnn, "head": self.head}
        if self.embed is not None:
            parts["embed"] = self.embed
        return parts

    def parameters(self) -> dict[str, Array]:
        """``"{part}.{name}"`` -> live parameter array, for the optimizer."""
        return {f"{p}.{k}": v for p, part in self._parts().items()
                for k, v in part.parameters().items()}

    @property
    def grads(self) -> dict[str, Array]:
        """``"{part}.{name}"`` -> live gradient array (same keys as :meth:`parameters`)."""
        return {f"{p}.{k}": v for p, part in self._parts().items() for k, v in part.grads.items()}

    def zero_grad(self) -> None:
        """Set every accumulated gradient to zero."""
        for part in self._parts().values():
            part.zero_grad()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter, under the names of :meth:`parameters`."""
        return {k: to_numpy(v).copy() for k, v in self.parameters().items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Copy parameters in, checking that the names and shapes match exactly and that the
        values are finite floating-point numbers (of any precision, cast to the model's dtype).

        Raises
        ------
        ValueError
            For a missing, unexpected or misshapen array, one of a non-floating dtype, or one
            holding NaN or inf (naming its key); nothing is changed then.
        """
        params = self.parameters()
        check_state_dict(state_dict, {name: tuple(p.shape) for name, p in params.items()},
                         params["head.weight"].dtype)
        for name, p in params.items():
            p[...] = self.rnn.backend.asarray(state_dict[name], self.dtype)

    def train(self, mode: bool = True) -> "SequenceModel":
        """Training mode: dropout between recurrent layers is on."""
        self.rnn.train(mode)
        return self

    def eval(self) -> "SequenceModel":
        """Evaluation mode: no dropout."""
        return self.train(False)

    def encode(self, inputs: Any) -> Array:
        """The recurrent stack's input (T, B, I) for the model's inputs."""
        if self.config["input_kind"] == "dense":
            check_floating(inputs, "inputs", self.head.parameters()["weight"].dtype)
            return self.rnn.backend.asarray(inputs, self.dtype)
        tokens = self.xp.asarray(inputs)
        if self.embed is not None:
            return self.embed.forward(tokens)
        return self.onehot.forward(tokens)

    def forward(self, inputs: Any, state: State = None) -> tuple[Array, State]:
        """Outputs (T, B, output_size) for every step, and the final recurrent state."""
        y, state = self.rnn(self.encode(inputs), state)
        return self.head.forward(y), state

    __call__ = forward

    def backward(self, doutputs: Array, dstate: State = None) -> State:
        """BPTT through the last forward; accumulates every gradient and returns d(state0)."""
        dy = self.head.backward(doutputs)
        dx, dstate0 = self.rnn.backward(dy, dstate)
        if self.embed is not None:
            self.embed.backward(dx)
        return dstate0

    @classmethod
    def from_config(cls, config: dict[str, Any], device: str | None = None) -> "SequenceModel":
        """Build a model of the same shape as ``config`` (from :attr:`config`), optionally on
        another device; its weights are then loaded with :meth:`load_state_dict`."""
        kwargs = dict(config)
        if device is not None:
            kwargs["device"] = device
        return cls(**kwargs)
