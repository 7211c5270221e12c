"""The one description of each cell: gates, states, parameters, saved buffers, kernel arguments.

Everything that needs a gate count, a state or parameter name, a buffer or a kernel's argument
order reads it from a :class:`CellSpec`: the layers and cells (parameter names and shapes,
state names), the NumPy and CUDA backends (the cell functions' arguments), the CUDA step loops
(buffers and kernel arguments), the persistent planner and the kernel loader (which cells have
which kernels) and interop (the matching torch.nn class).

A spec is built by :func:`cell_spec` from a cell name and :class:`Options`, so a variant of a
cell is an option of its description (a field of :class:`Options` read by the cell's
declaration below), not a new class.

Kernel arguments
----------------
Every kernel of every cell takes its array arguments in one of the layouts of
:data:`SIGNATURES`; a layout names the buffers every cell shares and the groups a cell fills
from its declaration (:data:`INPUTS`, :data:`STATES`, ...). After the arrays come t, B, H and
the cell's ``extra_args`` (pointwise), t, B, P (the projected LSTM's projection kernels), or
T, B, H and the plan's layout (persistent). The zoneout masks (:attr:`CellSpec.zoneout`) are
optional arguments: an absent one is a null pointer, which the kernels read as no zoneout.
The LSTM's pointwise kernels are templates on the
options of :data:`LSTM_KERNEL_OPTIONS` (:attr:`CellSpec.template_arguments`). A
persistent backward updates the state gradients in place: the buffers it reads as dL/d(state)_T
it leaves as dL/d(state)_0, written as an explicit alias (``dh0`` is ``dh``) in
:attr:`CellSpec.aliases`.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

CELLS = ("rnn", "lstm", "gru")
#: Nonlinearities of the vanilla RNN; a kernel's code for one is its index (enum Nonlinearity
#: in kernels_cu/rnn.cu).
NONLINEARITIES = ("tanh", "relu", "sigmoid")
#: Cell names of the model and the command line: a vanilla RNN names its nonlinearity.
MODEL_CELLS = ("lstm", "gru") + tuple(f"rnn-{n}" for n in NONLINEARITIES)
#: The cell functions' weight arguments, and the order in which backward returns their grads.
PARAMETERS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: The LSTM variants' own parameters, after :data:`PARAMETERS` in that order, and the keyword
#: of the cell functions that takes each.
VARIANT_PARAMETERS = {"weight_hr": "w_hr", "weight_ch": "w_ch", "ln_weight_ih": "ln_ih",
                      "ln_weight_hh": "ln_hh", "ln_weight_c": "ln_c", "ln_bias_c": "ln_bc"}
#: The layer-normalised LSTM's parameters, in order, and the value each starts at.
LAYER_NORM_PARAMETERS = {"ln_weight_ih": 1.0, "ln_weight_hh": 1.0, "ln_weight_c": 1.0,
                         "ln_bias_c": 0.0}
DIRECTIONS = ("forward", "backward")
#: The options that regularise training (masks the layers and cells draw from their generator).
REGULARISERS = ("zoneout", "zoneout_cell", "recurrent_dropout", "weight_dropout")
#: The LSTM options that are template arguments of its pointwise kernels, in their order
#: (``lstm_forward_pointwise<float, Peephole, ForgetGate, Projection>``; projection is
#: proj_size > 0).
LSTM_KERNEL_OPTIONS = ("peephole", "forget_gate", "projection")


@dataclass(frozen=True)
class Buffer:
    """One buffer of a step loop.

    shape : sizes by symbol: "T", "T+1", "B", "H", "P" (the size of h and y: proj_size with
        a projection, else H), "G" (gates * H) or "C" (the peephole weights, (G-1) * H; 1,
        unread, without peepholes).
    kind : element type: "storage" (the call's dtype), "acc" (its accumulator dtype: float32
        for the 16-bit dtypes) or "int32".
    what : what it holds, for out-of-memory messages.
    """

    shape: tuple[str, ...]
    kind: str
    what: str


#: Buffers every cell's step loops use, whatever the cell.
COMMON_BUFFERS: dict[str, Buffer] = {
    "xp": Buffer(("T", "B", "G"), "acc", "input projection Xp"),
    "hp": Buffer(("B", "G"), "acc", "recurrent projection Hp"),
    "w_hh": Buffer(("G", "P"), "storage", "W_hh"),
    "lengths": Buffer(("B",), "int32", "lengths"),
    "y": Buffer(("T", "B", "P"), "storage", "output y"),
    "dy": Buffer(("T", "B", "P"), "storage", "dy"),
    "dh": Buffer(("B", "P"), "acc", "dh"),
    "rmask": Buffer(("B", "P"), "storage", "recurrent dropout mask"),
    "hm": Buffer(("B", "P"), "storage", "h_{t-1} times the recurrent dropout mask"),
    "dhrec": Buffer(("B", "P"), "acc", "recurrent gradient before the dropout mask"),
    "zh": Buffer(("T", "B", "P"), "storage", "zoneout mask of h"),
}

# The groups of a layout, filled from a cell's declaration.
WEIGHTS = "<weights>"  # the cell's own weights its pointwise kernels read (peepholes)
INPUTS = "<inputs>"  # forward inputs of the cell's own (the GRU's b_hh)
STATES = "<states>"  # the recurrent states, (T+1, B, H) each
OUTPUTS = "<outputs>"  # what forward saves beyond the states and y
READS = "<reads>"  # what the pointwise backward reads of the forward's buffers
PERSISTENT_READS = "<persistent reads>"  # the same, in the persistent backward's order
STATE_GRADS = "<state grads>"  # dL/d(state), (B, H) each: in at step T
GRADS = "<grads>"  # backward's per-step outputs (the gradients of the projections)
STATE_GRADS_OUT = "<state grads out>"  # dL/d(state)_0, aliases of STATE_GRADS
ZONEOUT = "<zoneout>"  # the zoneout masks of the states, null pointers when absent

#: The array arguments of each kernel, in the order of its C++ signature, for every cell
#: (the projection kernels are the LSTM's with proj_size > 0 only).
SIGNATURES: dict[str, tuple[str, ...]] = {
    "forward_pointwise": ("xp", "hp", WEIGHTS, INPUTS, STATES, "y", OUTPUTS, "lengths",
                          ZONEOUT),
    "backward_pointwise": (WEIGHTS, READS, "dy", STATE_GRADS, GRADS, "lengths", ZONEOUT),
    "forward_projection": ("h", "y", "lengths", "zh"),
    "backward_projection": ("dy", "dh", "dhr", "lengths", "zh"),
    # The layer-normalised LSTM's step kernels, in place of its pointwise ones.
    "forward_layer_norm": ("xp", "hp", WEIGHTS, INPUTS, STATES, "y", OUTPUTS, "lengths",
                           ZONEOUT),
    "backward_layer_norm": (WEIGHTS, READS, "dy", STATE_GRADS, GRADS, "lengths", ZONEOUT),
    "forward_persistent": ("xp", "w_hh", INPUTS, "lengths", STATES, OUTPUTS, "y"),
    "backward_persistent": ("w_hh", "lengths", PERSISTENT_READS, "dy", STATE_GRADS, GRADS,
                            STATE_GRADS_OUT),
}


class Forward(NamedTuple):
    """One layer-direction's forward, as every backend returns it.

    y : (T, B, H) outputs; states : the final states, in the order of :attr:`CellSpec.states`;
    cache : what backward needs (opaque); algo_used, algo_reason : the step loop that ran and
    why ("" on the CPU).
    """

    y: Any
    states: tuple[Any, ...]
    cache: Any
    algo_used: str = ""
    algo_reason: str = ""


class Backward(NamedTuple):
    """One layer-direction's BPTT, as every backend returns it.

    dx : (T, B, I); states : the gradients with respect to the initial states; grads : those
    of the weights, in the order of :data:`PARAMETERS` (None without bias); algo_used,
    algo_reason : as in :class:`Forward`.
    """

    dx: Any
    states: tuple[Any, ...]
    grads: tuple[Any, ...]
    algo_used: str = ""
    algo_reason: str = ""


@dataclass(frozen=True)
class Options:
    """What a cell's description is built from, beyond the cell's name.

    nonlinearity : the vanilla RNN's, one of :data:`NONLINEARITIES` (the gated cells have
        fixed ones and take only "tanh", the default).
    proj_size : LSTM only: P > 0 projects h' = o * tanh(c) to h = W_hr h' of size P, as
        torch.nn.LSTM(proj_size=P); 0 for none.
    peephole : LSTM only: the gates i, f (from c_{t-1}) and o (from c_t) also read the cell
        through the diagonal weights ``weight_ch``.
    forget_gate : LSTM only: False is the original LSTM without a forget gate,
        c_t = c_{t-1} + i * g (gates i, g, o).
    forget_bias : LSTM only: None keeps PyTorch's initialisation; a float sets the forget
        gate's rows of b_ih to it and of b_hh to 0 after it.
    layer_norm : LSTM only: normalise x W_ih^T and h W_hh^T (over the G*H pre-activations)
        and c' (over H) before the nonlinearities, with the gains ``ln_weight_ih``,
        ``ln_weight_hh``, ``ln_weight_c`` and the bias ``ln_bias_c``.
    zoneout : probability, in training, that a unit of h keeps its previous value at a step
        (eval mode: h_t = p h_{t-1} + (1 - p) h'_t).
    zoneout_cell : LSTM only: the same for c.
    recurrent_dropout : probability of zeroing a unit of h_{t-1} in the recurrent product,
        with one (B, P') mask (scaled by 1 / (1 - p)) for every step of a forward.
    weight_dropout : probability of zeroing an element of W_hh (DropConnect), with one mask
        (scaled by 1 / (1 - p)) per forward.
    The regularisers are drawn by the layers from their generator; probabilities are in
    [0, 1).
    """

    nonlinearity: str = "tanh"
    proj_size: int = 0
    peephole: bool = False
    forget_gate: bool = True
    forget_bias: float | None = None
    layer_norm: bool = False
    zoneout: float = 0.0
    zoneout_cell: float = 0.0
    recurrent_dropout: float = 0.0
    weight_dropout: float = 0.0

    @property
    def beyond_torch_lstm(self) -> bool:
        """Whether torch.nn.LSTM (and cuDNN under it) cannot express the cell: peepholes, no
        forget gate or layer normalisation."""
        return bool(self.peephole or not self.forget_gate or self.layer_norm)

    @property
    def lstm_variant(self) -> bool:
        """Whether an LSTM option that changes the cell's equations is set (not forget_bias,
        an initialisation, nor the regularisers)."""
        return bool(self.proj_size or self.peephole or not self.forget_gate or self.layer_norm)


@dataclass(frozen=True)
class CellSpec:
    """One cell with its options, as every part of the package sees it.

    cell : "rnn", "lstm" or "gru": names the cell functions (``<cell>_forward`` in
        reference/<cell>.py and cuda/<cell>.py), the kernels (``<cell>_forward_pointwise`` in
        kernels_cu/<cell>.cu, ``<cell>_forward_persistent``) and messages.
    title : the public class name (``LSTM``, ``LSTMCell``) and torch.nn's.
    options : what the spec was built from.
    gate_names : the gates in PyTorch's row order of W_ih and W_hh; G = their number.
    states : the recurrent states (h first); a layer's initial ones are named ``h0``, ``c0``.
    buffers : the cell's own step-loop buffers beyond :data:`COMMON_BUFFERS` and the states'.
    inputs, outputs, reads, persistent_reads, grads, weights : the cell's groups of
        :data:`SIGNATURES` (grads: the gradient with respect to the input projection, then the
        one with respect to the recurrent projection, the same name when they are one array,
        then any further per-step gradients).
    persistent : whether the persistent kernels run the cell with these options.
    pointwise_slots : arguments of the pointwise kernels that take another buffer than the
        one they name: with a projection the forward's y receives m = o * tanh(c) and the
        backward's dh is dm, the gradient with respect to m.
    """

    cell: str
    title: str
    options: Options
    gate_names: tuple[str, ...]
    states: tuple[str, ...]
    buffers: Mapping[str, Buffer]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    reads: tuple[str, ...]
    grads: tuple[str, ...]
    persistent_reads: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    persistent: bool = False
    pointwise_slots: Mapping[str, str] = field(default_factory=dict)
    _all: dict[str, Buffer] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = {s: "P" if s == "h" else "H" for s in self.states}
        own = {s: Buffer(("T+1", "B", size[s]), "storage", f"states {s}") for s in self.states}
        own.update({f"d{s}": Buffer(("B", size[s]), "acc", f"d{s}") for s in self.states})
        self._all.update({**COMMON_BUFFERS, **own, **self.buffers})

    # ------------------------------------------------------------ gates, states, parameters
    @property
    def gates(self) -> int:
        """G: rows of W_ih and W_hh per hidden unit."""
        return len(self.gate_names)

    @property
    def initial_state_names(self) -> tuple[str, ...]:
        """A layer's initial states, as its arguments and messages name them (``h0``, ``c0``)."""
        return tuple(f"{s}0" for s in self.states)

    @property
    def keywords(self) -> dict[str, Any]:
        """The options as keywords of the public classes."""
        o = self.options
        regularisers = {"zoneout": o.zoneout, "recurrent_dropout": o.recurrent_dropout,
                        "weight_dropout": o.weight_dropout}
        if self.cell == "rnn":
            return {"nonlinearity": o.nonlinearity, **regularisers}
        if self.cell == "lstm":
            return {"proj_size": o.proj_size, "peephole": o.peephole,
                    "forget_gate": o.forget_gate, "forget_bias": o.forget_bias,
                    "layer_norm": o.layer_norm, **regularisers, "zoneout_cell": o.zoneout_cell}
        return regularisers

    @property
    def function_keywords(self) -> dict[str, Any]:
        """The options the cell functions take (forget_bias is an initialisation only; the
        regularisers reach them as masks the layers draw)."""
        if self.cell == "lstm" and self.options.lstm_variant:
            return {"forget_gate": self.options.forget_gate}
        return {k: v for k, v in self.keywords.items() if k == "nonlinearity"}

    def function_arguments(
        self, weights: tuple[Any, ...]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The cell functions' weight arguments from ``weights`` in :attr:`parameters` order:
        those of :data:`PARAMETERS` positional, the variants' as keywords with the options."""
        n = len(PARAMETERS)
        named = {VARIANT_PARAMETERS[p]: w for p, w in zip(self.parameters[n:], weights[n:])}
        return tuple(weights[:n]), {**named, **self.function_keywords}

    def output_size(self, hidden_size: int) -> int:
        """P': the size of h and y, proj_size when the LSTM projects, else H."""
        return self.options.proj_size or hidden_size

    def state_sizes(self, hidden_size: int) -> tuple[int, ...]:
        """The size of each state of :attr:`states`: h is P', the LSTM's c is H."""
        return tuple(self.output_size(hidden_size) if s == "h" else hidden_size
                     for s in self.states)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The weight arguments of the cell functions (and their grads), unsuffixed, in order:
        :data:`PARAMETERS`, then those of :data:`VARIANT_PARAMETERS` the options add."""
        extra = (("weight_hr",) if self.options.proj_size else ()) + (
            ("weight_ch",) if self.options.peephole else ()) + (
            tuple(LAYER_NORM_PARAMETERS) if self.options.layer_norm else ())
        return PARAMETERS + extra

    def split_forward(self, out: tuple[Any, ...], algo_used: str = "",
                      algo_reason: str = "") -> Forward:
        """A ``<cell>_forward``'s return tuple (y, *states, cache) as a :class:`Forward`."""
        return Forward(out[0], tuple(out[1:-1]), out[-1], algo_used, algo_reason)

    def split_backward(self, out: tuple[Any, ...], algo_used: str = "",
                       algo_reason: str = "") -> Backward:
        """A ``<cell>_backward``'s return tuple (dx, *d states, *weight grads) as a
        :class:`Backward`."""
        n = len(self.states)
        return Backward(out[0], tuple(out[1 : n + 1]), tuple(out[n + 1 :]), algo_used,
                        algo_reason)

    def parameter_shapes(self, input_size: int, hidden_size: int, bias: bool,
                         suffix: str = "") -> dict[str, tuple[int, ...]]:
        """Name -> shape of one layer-direction's parameters (names end in ``suffix``), in the
        order of :data:`PARAMETERS`."""
        GH, P = self.gates * hidden_size, self.output_size(hidden_size)
        shapes = {f"weight_ih{suffix}": (GH, input_size), f"weight_hh{suffix}": (GH, P)}
        if bias:
            shapes.update({f"bias_ih{suffix}": (GH,), f"bias_hh{suffix}": (GH,)})
        if self.options.proj_size:
            shapes[f"weight_hr{suffix}"] = (P, hidden_size)
        if self.options.peephole:
            shapes[f"weight_ch{suffix}"] = ((self.gates - 1) * hidden_size,)
        if self.options.layer_norm:
            for name in LAYER_NORM_PARAMETERS:
                shapes[f"{name}{suffix}"] = (GH,) if name.endswith(("ih", "hh")) else (
                    hidden_size,)
        return shapes

    def layer_parameter_shapes(self, input_size: int, hidden_size: int, num_layers: int,
                               num_directions: int, bias: bool) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter of a layer stack, with PyTorch's names."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else num_directions * self.output_size(hidden_size)
            for d in range(num_directions):
                shapes.update(self.parameter_shapes(in_size, hidden_size, bias,
                                                    parameter_suffix(layer, d)))
        return shapes

    # ------------------------------------------------------------ kernels and their buffers
    @property
    def bias_in_kernel(self) -> bool:
        """b_hh goes to the kernels as the (G,) buffer "bh" instead of into Xp (the GRU's
        reset gate scales b_hn)."""
        return "bh" in self.inputs

    @property
    def extra_args(self) -> tuple[int, ...]:
        """Trailing int arguments of both pointwise kernels (the RNN's nonlinearity code)."""
        return (NONLINEARITIES.index(self.options.nonlinearity),) if self.cell == "rnn" else ()

    @property
    def template_arguments(self) -> str:
        """The pointwise kernels' template arguments after the storage type ("true, false"
        for an LSTM with peepholes and no forget gate; "" for the other cells)."""
        if self.cell != "lstm":
            return ""
        o = self.options
        values = {"peephole": o.peephole, "forget_gate": o.forget_gate,
                  "projection": self.projected}
        return ", ".join(str(values[n]).lower() for n in LSTM_KERNEL_OPTIONS)

    @property
    def projected(self) -> bool:
        """Whether h is a projection (an LSTM with proj_size > 0): the step loops then run
        the ``projection`` kernels and a GEMM with W_hr around the pointwise ones."""
        return bool(self.options.proj_size)

    @property
    def variant(self) -> str:
        """Names ``extra_args`` and the template options in graph keys and launch messages
        ("" when there are none)."""
        if self.cell == "rnn":
            return self.options.nonlinearity
        if self.cell == "lstm":
            o = self.options
            return ", ".join((["peephole"] if o.peephole else [])
                             + ([] if o.forget_gate else ["no forget gate"])
                             + ([f"proj_size={o.proj_size}"] if o.proj_size else [])
                             + (["layer norm"] if o.layer_norm else []))
        return ""

    @property
    def unsupported_persistent(self) -> str:
        """Why the persistent kernels cannot run these options ("" when they can or the cell
        has none)."""
        if self.cell != "lstm" or self.persistent:
            return ""
        o = self.options
        named = ([f"proj_size={o.proj_size}"] if o.proj_size else []) + (
            ["peephole=True"] if o.peephole else []) + (
            [] if o.forget_gate else ["forget_gate=False"]) + (
            ["layer_norm=True"] if o.layer_norm else [])
        return (f"the persistent LSTM kernels run only the plain cell, not "
                f"{', '.join(named)}")

    @property
    def saved(self) -> tuple[str, ...]:
        """Forward buffers that backward reads ("h" always: dW_hh = sum_t dG_t^T h_{t-1}; "m"
        with a projection: dW_hr = sum_t dh_t^T m_t)."""
        return tuple(dict.fromkeys(("h",) + self.reads + self.persistent_reads
                                   + (("m",) if self.projected else ())))

    @property
    def aliases(self) -> dict[str, str]:
        """Argument names that are another buffer: dL/d(state)_0 is the dL/d(state) buffer."""
        return {f"d{s}0": f"d{s}" for s in self.states}

    def kernel_name(self, direction: str, kind: str) -> str:
        """``<cell>_<direction>_<kind>``, e.g. ``lstm_forward_pointwise``."""
        return f"{self.cell}_{direction}_{kind}"

    @property
    def source_file(self) -> str:
        """The file of the pointwise kernels in kernels_cu/."""
        return f"{self.cell}.cu"

    @property
    def step_kind(self) -> str:
        """The kind of the kernels the step loops launch once a step: "layer_norm" (a block
        per batch row, kernels_cu/lstm_layer_norm.cu) for the layer-normalised LSTM, else
        "pointwise" (a thread per unit, :attr:`source_file`)."""
        return "layer_norm" if self.options.layer_norm else "pointwise"

    @property
    def step_source(self) -> str:
        """The file of the :attr:`step_kind` kernels in kernels_cu/."""
        return "lstm_layer_norm.cu" if self.options.layer_norm else self.source_file

    @property
    def layer_norm_kernels(self) -> tuple[str, ...]:
        """The layer-normalised LSTM's step kernels (none for the other cells)."""
        return tuple(self.kernel_name(d, "layer_norm") for d in DIRECTIONS) \
            if self.cell == "lstm" else ()

    @property
    def input_norms(self) -> tuple[str, ...]:
        """What the layer norm of x W_ih^T saves for backward (before the step loop)."""
        return ("xhat", "xrstd") if self.options.layer_norm else ()

    @property
    def pointwise_kernels(self) -> tuple[str, ...]:
        """The kernels of :attr:`source_file` templated on the cell's options."""
        return tuple(self.kernel_name(d, "pointwise") for d in DIRECTIONS)

    @property
    def projection_kernels(self) -> tuple[str, ...]:
        """The LSTM's projection kernels in :attr:`source_file` (templated on the storage
        type only); none for the other cells."""
        return tuple(self.kernel_name(d, "projection") for d in DIRECTIONS) \
            if self.cell == "lstm" else ()

    def args(self, direction: str, kind: str) -> tuple[str, ...]:
        """The array arguments of the ``<direction>_<kind>`` kernel, in order.

        Raises
        ------
        ValueError
            For a kernel the cell does not have.
        """
        layout = f"{direction}_{kind}"
        if layout not in SIGNATURES or (kind == "persistent" and not self.persistent) or (
                kind == "projection" and not self.projected) or (
                kind == "layer_norm" and not self.options.layer_norm):
            raise ValueError(f"kernel: expected one of {self._kernels()}, got {layout!r}")
        groups = {
            WEIGHTS: self.weights, INPUTS: self.inputs, STATES: self.states,
            OUTPUTS: self.outputs,
            READS: self.reads, PERSISTENT_READS: self.persistent_reads or self.reads,
            STATE_GRADS: tuple(f"d{s}" for s in self.states),
            GRADS: tuple(dict.fromkeys(self.grads)),
            STATE_GRADS_OUT: tuple(self.aliases),
            ZONEOUT: self.zoneout,
        }
        return tuple(n for item in SIGNATURES[layout] for n in groups.get(item, (item,)))

    def _kinds(self) -> tuple[str, ...]:
        return (self.step_kind,) + (("persistent",) if self.persistent else ()) + (
            ("projection",) if self.projected else ())

    def _kernels(self) -> tuple[str, ...]:
        return tuple(f"{d}_{k}" for k in self._kinds() for d in DIRECTIONS)

    @property
    def forward_args(self) -> tuple[str, ...]:
        return self.args("forward", "pointwise")

    @property
    def backward_args(self) -> tuple[str, ...]:
        return self.args("backward", "pointwise")

    def buffer(self, name: str) -> Buffer:
        """The description of buffer ``name`` (an alias names the buffer it is)."""
        return self._all[self.aliases.get(name, name)]

    @property
    def zoneout(self) -> tuple[str, ...]:
        """The zoneout mask buffers of the states, "z" and the state's initial: ("zh",), and
        ("zh", "zc") for the LSTM."""
        return tuple(f"z{s}" for s in self.states)

    def names(self, direction: str) -> tuple[str, ...]:
        """Every buffer the step loops of ``direction`` always touch (aliases resolved; the
        zoneout masks, which a call may leave out, are not among them)."""
        args = [self.pointwise_slots.get(n, n) for n in self.args(direction, self.step_kind)]
        args += [n for k in self._kinds()[1:] for n in self.args(direction, k)]
        args += self.states if direction == "forward" else [f"d{s}" for s in self.states]
        args += ["w_hh"] + (["w_hr"] if self.projected else [])
        return tuple(n for n in dict.fromkeys(self.aliases.get(n, n) for n in args)
                     if n not in self.zoneout)


def parameter_suffix(layer: int, direction: int) -> str:
    """``_l{layer}`` and ``_reverse`` for the second direction, as torch.nn names them."""
    return f"_l{layer}" + ("_reverse" if direction else "")


def _rnn(options: Options) -> CellSpec:
    return CellSpec(
        cell="rnn", title="RNN", options=options, gate_names=("a",), states=("h",),
        buffers={
            "act": Buffer(("T", "B", "H"), "storage", "saved activations"),
            "da": Buffer(("T", "B", "G"), "storage", "pre-activation gradients dA"),
        },
        inputs=(), outputs=("act",), reads=("act",), grads=("da", "da"),
    )


#: The layer-normalised LSTM's buffers beyond the LSTM's.
LAYER_NORM_BUFFERS: dict[str, Buffer] = {
    "ln_hh": Buffer(("G",), "acc", "layer norm gain ln_weight_hh"),
    "ln_c": Buffer(("H",), "acc", "layer norm gain ln_weight_c"),
    "ln_bc": Buffer(("H",), "acc", "layer norm bias ln_bias_c"),
    "xhat": Buffer(("T", "B", "G"), "storage", "saved normalised x W_ih^T"),
    "xrstd": Buffer(("T", "B"), "acc", "saved 1 / std of x W_ih^T"),
    "hhat": Buffer(("T", "B", "G"), "storage", "saved normalised h W_hh^T"),
    "hrstd": Buffer(("T", "B"), "acc", "saved 1 / std of h W_hh^T"),
    "chat": Buffer(("T", "B", "H"), "storage", "saved normalised c'"),
    "crstd": Buffer(("T", "B"), "acc", "saved 1 / std of c'"),
    "cnew": Buffer(("B", "H"), "acc", "this step's c'"),
    "dhp": Buffer(("T", "B", "G"), "storage", "recurrent-product gradients dHp"),
    "dn": Buffer(("T", "B", "H"), "acc", "gradients of the normalised cell dn"),
}


def _lstm(options: Options) -> CellSpec:
    gate_names = ("i", "f", "g", "o") if options.forget_gate else ("i", "g", "o")
    ln = options.layer_norm
    return CellSpec(
        cell="lstm", title="LSTM", options=options, gate_names=gate_names,
        states=("h", "c"),
        buffers={**(LAYER_NORM_BUFFERS if ln else {}),
            "w_ch": Buffer(("C",), "acc", "peephole weights w_ch"),
            "w_hr": Buffer(("P", "H"), "storage", "W_hr"),
            "m": Buffer(("T", "B", "H"), "storage", "saved m = o * tanh(c)"),
            "dm": Buffer(("B", "H"), "acc", "dm"),
            "dhr": Buffer(("T", "B", "P"), "storage", "projection gradients dL/dh_t"),
            "gates": Buffer(("T", "B", "G"), "storage", f"saved gates {', '.join(gate_names)}"),
            "tanh_c": Buffer(("T", "B", "H"), "storage", "saved tanh(c)"),
            "dgates": Buffer(("T", "B", "G"), "storage", "gate gradients dG"),
            "zc": Buffer(("T", "B", "H"), "storage", "zoneout mask of c"),
        },
        inputs=(), outputs=("gates", "tanh_c") + (
            ("hhat", "hrstd", "chat", "crstd", "cnew") if ln else ()),
        reads=("gates", "c", "tanh_c") + (("hhat", "hrstd", "chat", "crstd") if ln else ()),
        grads=("dgates", "dhp", "dn") if ln else ("dgates", "dgates"),
        weights=("w_ch", "ln_hh", "ln_c", "ln_bc") if ln else ("w_ch",),
        persistent=not options.lstm_variant,
        pointwise_slots={"y": "m", "dh": "dm"} if options.proj_size else {},
    )


def _gru(options: Options) -> CellSpec:
    return CellSpec(
        cell="gru", title="GRU", options=options, gate_names=("r", "z", "n"), states=("h",),
        buffers={
            "bh": Buffer(("G",), "acc", "b_hh"),
            "gates": Buffer(("T", "B", "G"), "storage", "saved gates r, z, n"),
            "hn": Buffer(("T", "B", "H"), "storage", "saved W_hn h + b_hn"),
            "dxp": Buffer(("T", "B", "G"), "storage", "input-side gradients dXp"),
            "dhp": Buffer(("T", "B", "G"), "storage", "recurrent gradients dHp"),
        },
        inputs=("bh",), outputs=("gates", "hn"), reads=("gates", "hn", "h"),
        persistent_reads=("h", "gates", "hn"), grads=("dxp", "dhp"), persistent=True,
    )


_DECLARATIONS = {"rnn": _rnn, "lstm": _lstm, "gru": _gru}


@functools.lru_cache(maxsize=None)
def _spec(cell: str, options: Options) -> CellSpec:
    return _DECLARATIONS[cell](options)


def cell_spec(cell: str, **options: Any) -> CellSpec:
    """The description of ``cell`` ("rnn", "lstm", "gru") with the given :class:`Options`.

    Raises
    ------
    ValueError
        For an unknown cell or an option value the cell does not take.
    TypeError
        For an option name that :class:`Options` does not have (as for a keyword argument).
    """
    if cell not in CELLS:
        raise ValueError(f"cell: expected one of {CELLS}, got {cell!r}")
    unknown = sorted(set(options) - set(Options.__dataclass_fields__))
    if unknown:
        raise TypeError(f"{cell}: unexpected keyword argument(s) {unknown}")
    opts = _checked(cell, Options(**options))
    return _spec(cell, opts)


def _checked(cell: str, opts: Options) -> Options:
    """``opts`` with its values normalised, or a ValueError naming the option."""
    allowed = NONLINEARITIES if cell == "rnn" else ("tanh",)
    if opts.nonlinearity not in allowed:
        raise ValueError(f"nonlinearity: expected one of {allowed}, got {opts.nonlinearity!r}")
    for name in REGULARISERS:
        p = getattr(opts, name)
        if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) \
                or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"{name}: expected a number in [0, 1), got {p!r}")
    opts = dataclasses.replace(opts, **{n: float(getattr(opts, n)) for n in REGULARISERS})
    lstm = Options(nonlinearity=opts.nonlinearity)
    if cell != "lstm":
        for name in ("proj_size", "peephole", "forget_gate", "forget_bias", "layer_norm",
                     "zoneout_cell"):
            if getattr(opts, name) != getattr(lstm, name):
                raise ValueError(f"{name}: an LSTM option; expected the default "
                                 f"{getattr(lstm, name)!r} for the {cell}, got "
                                 f"{getattr(opts, name)!r}")
        return opts
    if isinstance(opts.proj_size, bool) or not isinstance(opts.proj_size, (int, np.integer)) \
            or opts.proj_size < 0:
        raise ValueError(f"proj_size: expected an int >= 0, got {opts.proj_size!r}")
    forget_bias = opts.forget_bias
    if forget_bias is not None:
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float, np.number)) \
                or not np.isfinite(forget_bias):
            raise ValueError(f"forget_bias: expected None or a finite float, got {forget_bias!r}")
        if not opts.forget_gate:
            raise ValueError("forget_bias: expected None with forget_gate=False (there is no "
                             f"forget gate to bias), got {forget_bias!r}")
        forget_bias = float(forget_bias)
    return dataclasses.replace(opts, proj_size=int(opts.proj_size), peephole=bool(opts.peephole),
                               forget_gate=bool(opts.forget_gate), forget_bias=forget_bias,
                               layer_norm=bool(opts.layer_norm))


def model_cell_spec(name: str, **options: Any) -> CellSpec:
    """The spec of a model cell name in :data:`MODEL_CELLS` ("rnn-relu": RNN with relu) with
    further :class:`Options` (the LSTM variants).

    Raises
    ------
    ValueError
        For a name outside :data:`MODEL_CELLS`, or an option value the cell does not take.
    """
    if name not in MODEL_CELLS:
        raise ValueError(f"cell: expected one of {MODEL_CELLS}, got {name!r}")
    cell, _, nonlinearity = name.partition("-")
    if nonlinearity:
        options["nonlinearity"] = nonlinearity
    return cell_spec(cell, **options)


def kernel_variants(cell: str) -> tuple[str, ...]:
    """The :attr:`CellSpec.template_arguments` of every instantiation of ``cell``'s pointwise
    kernels: each combination of :data:`LSTM_KERNEL_OPTIONS` for the LSTM, ("",) otherwise."""
    if cell != "lstm":
        return ("",)
    return tuple(cell_spec("lstm", peephole=p, forget_gate=f, proj_size=int(r)).template_arguments
                 for p in (False, True) for f in (True, False) for r in (False, True))


#: Every cell with its default options.
SPECS: dict[str, CellSpec] = {cell: cell_spec(cell) for cell in CELLS}
#: The cells with persistent kernels and their gate count G.
PERSISTENT_GATES: dict[str, int] = {c: s.gates for c, s in SPECS.items() if s.persistent}
