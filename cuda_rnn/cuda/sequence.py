"""One layer-direction of any cell on the GPU, forward and BPTT, run from its :class:`CellSpec`.

Forward: one GEMM projects the input of all steps (Xp = x W_ih^T + bias), then the step loop
of ``algo`` (see :mod:`cuda_rnn.cuda.algo`):

- "alternating": per step one GEMM h_{t-1} W_hh^T into the preallocated Hp and one launch of
  ``<cell>_forward_pointwise`` (a projected LSTM then adds the GEMM h_t = m_t W_hr^T and a
  launch of ``lstm_forward_projection``, :class:`_ProjectionStep`; recurrent dropout first
  masks h_{t-1} with ``recurrent_dropout_forward``, :class:`_RecurrentDropout`);
- "graph": that loop captured once per shape into a CUDA graph held by the caller's
  :class:`~cuda_rnn.cuda.graph.GraphCache` and replayed on its static buffers (inputs copied
  in, outputs copied out, so results are fresh arrays);
- "persistent": one cooperative launch of ``<cell>_forward_persistent`` runs every step.

Backward mirrors it in reverse time: per step one launch of ``<cell>_backward_pointwise`` and
one GEMM dh += dG_t W_hh (a projected LSTM first ``lstm_backward_projection`` and the GEMM
dm = dhr_t W_hr; or the captured loop, or one persistent launch), then GEMMs over all
steps for dx, dW_ih, dW_hh and the bias gradients. The step loops only launch work on buffers
allocated before them: no allocation and no host synchronisation inside, so they can be
captured. Zoneout needs no launch of its own: its masks (one element per step and unit,
copied to the device once per forward) are optional arguments of the pointwise and
projection kernels, which mix each state with its previous value and split its gradient.
The layer-normalised LSTM launches its :attr:`CellSpec.step_kind` kernels,
``lstm_<direction>_layer_norm`` (a block per batch row), in place of the pointwise ones; the
normalisation of x W_ih^T runs before the forward loop and its backward after the backward
one (:mod:`cuda_rnn.cuda.layer_norm`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..cellspec import CellSpec
from ..profiling import nvtx_range
from . import layer_norm, persistent
from .algo import check_step_loop, tf32_allowed
from .blas import GemmPlan
from .cellspec import allocate, arguments, describe_kernel, graph_key, peephole_size
from .common import (
    Dims,
    acc_state,
    backward_gemms,
    check_dy,
    check_inputs,
    contiguous,
    input_projection,
    step_lengths,
    summed_bias,
    time_steps,
)
from .dtypes import acc_dtype, cast, dtype_name, to_acc
from .errors import device_errors
from .graph import Buffers, GraphCache
from .launch import BLOCK, launch, pointwise_grid, step_launch_shape
from .loader import get_kernel


class SequenceCache(NamedTuple):
    """What :func:`backward` needs from a :func:`forward` call (opaque to the layers).

    saved : the spec's saved buffers and its own weights by name (fresh arrays, whichever
        ``algo`` ran).
    expectations : zoneout's probabilities by mask name where it ran without masks (eval
        mode), else empty.
    """

    spec: CellSpec
    x: Any
    w_ih: Any
    w_hh: Any
    lengths: Any
    saved: dict[str, Any]
    has_bias: bool
    dims: Dims
    expectations: dict[str, float] = {}

    @property
    def zoned(self) -> tuple[str, ...]:
        """The zoneout masks of the states zoneout mixed ("zh", "zc"), by masks (training) or
        by their probabilities (eval mode)."""
        return tuple(n for n in self.spec.zoneout if n in self.saved or n in self.expectations)


def _expectation(expectations: dict[str, float], name: str, dims: Dims) -> Any:
    """Zoneout's probability for mask ``name`` as the kernels' accumulator scalar (0: none)."""
    return acc_dtype(dims.dtype).type(expectations.get(name, 0.0))


def _tail(spec: CellSpec, dims: Dims, expectations: dict[str, float]) -> tuple[Any, ...]:
    return (np.int32(dims.B), np.int32(dims.H), *map(np.int32, spec.extra_args),
            *(_expectation(expectations, n, dims) for n in spec.zoneout))


class _ProjectionStep:
    """One step's projection work around the pointwise kernel of a projected LSTM: forward
    the GEMM h_{t+1} = m_t W_hr^T then ``lstm_forward_projection``; backward
    ``lstm_backward_projection`` then the GEMM dm = dhr_t W_hr."""

    def __init__(self, spec: CellSpec, direction: str, buffers: Buffers, dims: Dims,
                 expectations: dict[str, float]) -> None:
        B, H, P = dims.B, dims.H, dims.P
        self.kernel = get_kernel(spec.source_file, spec.kernel_name(direction, "projection"),
                                 dims.dtype)
        self.what = (f"{spec.kernel_name(direction, 'projection')}<{dims.dtype}> "
                     f"(B={B}, P={P})")
        self.arrays = arguments(spec, direction, "projection", buffers)
        self.tail = (np.int32(B), np.int32(P), _expectation(expectations, "zh", dims))
        self.grid = pointwise_grid(B * P)
        w_hr = buffers["w_hr"]
        self.w_ptr = w_hr.data.ptr
        if direction == "forward":
            m, h = buffers["m"], buffers["h"]
            self.gemm = GemmPlan(m[0], w_hr, h[0], trans_b=True, what="lstm h_t = m_t W_hr^T")
            self.a_ptr, self.a_step = m.data.ptr, B * H * m.itemsize
            self.c_ptr, self.c_step = h.data.ptr + B * P * h.itemsize, B * P * h.itemsize
        else:
            dhr, dm = buffers["dhr"], buffers["dm"]
            self.gemm = GemmPlan(dhr[0], w_hr, dm, what="lstm dm = dhr_t W_hr")
            self.a_ptr, self.a_step = dhr.data.ptr, B * P * dhr.itemsize
            self.c_ptr, self.c_step = dm.data.ptr, 0

    def gemm_at(self, t: int) -> None:
        self.gemm(self.a_ptr + t * self.a_step, self.w_ptr, self.c_ptr + t * self.c_step)

    def launch_at(self, t: int) -> None:
        launch(self.kernel, self.grid, (BLOCK,), self.arrays + (np.int32(t),) + self.tail,
               self.what)


class _StepKernel:
    """The step kernel of ``direction`` (:attr:`CellSpec.step_kind`: the pointwise one, or the
    layer-normalised LSTM's) with its arrays, scalars and launch shape, launched once a step."""

    def __init__(self, spec: CellSpec, direction: str, buffers: Buffers, dims: Dims,
                 expectations: dict[str, float]) -> None:
        self.kernel = get_kernel(spec.step_source, spec.kernel_name(direction, spec.step_kind),
                                 dims.dtype, spec.template_arguments)
        self.what = describe_kernel(spec, direction, dims)
        self.arrays = arguments(spec, direction, spec.step_kind, buffers)
        self.tail = _tail(spec, dims, expectations)
        self.grid, self.shared = step_launch_shape(spec.step_kind, dims.B, dims.H,
                                                   acc_dtype(dims.dtype).itemsize)

    def launch_at(self, t: int) -> None:
        launch(self.kernel, self.grid, (BLOCK,), self.arrays + (np.int32(t),) + self.tail,
               self.what, self.shared)


class _RecurrentDropout:
    """The launches of recurrent dropout around a step's recurrent GEMM: forward
    h~ = h_{t-1} * m into "hm" (the GEMM reads it), backward dh += dhr * m after the GEMM
    writes dhr into "dhrec"."""

    def __init__(self, direction: str, buffers: Buffers, dims: Dims) -> None:
        self.kernel = get_kernel("recurrent_dropout.cu", f"recurrent_dropout_{direction}",
                                 dims.dtype)
        self.what = f"recurrent_dropout_{direction}<{dims.dtype}> (B={dims.B}, P={dims.P})"
        n = dims.B * dims.P
        self.grid, self.n = pointwise_grid(n), np.int32(n)
        if direction == "forward":
            self.rows = [buffers["h"][t] for t in range(dims.T)]
            self.tail = (buffers["rmask"], buffers["hm"])
        else:
            self.head = (buffers["dhrec"], buffers["rmask"], buffers["dh"])

    def mask_input(self, t: int) -> None:
        launch(self.kernel, self.grid, (BLOCK,), (self.rows[t], *self.tail, self.n),
               self.what)

    def add_gradient(self) -> None:
        launch(self.kernel, self.grid, (BLOCK,), (*self.head, self.n), self.what)


def run_forward_steps(spec: CellSpec, buffers: Buffers, dims: Dims, name: str,
                      expectations: dict[str, float]) -> None:
    """The forward step loop: per step one GEMM and one pointwise launch (with a projection
    also its GEMM and launch; with recurrent dropout one launch before the GEMM), nothing
    else."""
    T, B, P = dims.T, dims.B, dims.P
    step = _StepKernel(spec, "forward", buffers, dims, expectations)
    h, w_hh, hp = buffers["h"], buffers["w_hh"], buffers["hp"]
    gemm = GemmPlan(h[0], w_hh, hp, trans_b=True, what=f"{spec.cell} h_{{t-1}} W_hh^T")
    h_ptr, h_step, w_ptr, hp_ptr = h.data.ptr, B * P * h.itemsize, w_hh.data.ptr, hp.data.ptr
    projection = (_ProjectionStep(spec, "forward", buffers, dims, expectations)
                  if spec.projected else None)
    dropout = None
    if "rmask" in buffers:  # the GEMM reads h~ = h_{t-1} * m, rewritten at every step
        dropout = _RecurrentDropout("forward", buffers, dims)
        h_ptr, h_step = buffers["hm"].data.ptr, 0
    for t in time_steps(T, name):
        if dropout is not None:
            dropout.mask_input(t)
        gemm(h_ptr + t * h_step, w_ptr, hp_ptr)
        step.launch_at(t)
        if projection is not None:
            projection.gemm_at(t)
            projection.launch_at(t)


def run_backward_steps(spec: CellSpec, buffers: Buffers, dims: Dims, name: str,
                      expectations: dict[str, float]) -> None:
    """The backward step loop: per step (reversed) one pointwise launch and one GEMM (with a
    projection first its launch and GEMM; with recurrent dropout the GEMM writes dhr and one
    launch adds dhr * m into dh)."""
    T, B, H = dims.T, dims.B, dims.H
    step = _StepKernel(spec, "backward", buffers, dims, expectations)
    recurrent = spec.grads[1]
    dg, w_hh, dh = buffers[recurrent], buffers["w_hh"], buffers["dh"]
    gemm = GemmPlan(dg[0], w_hh, dh, beta=1.0, what=f"{spec.cell} dh += {recurrent}_t W_hh")
    g_ptr, g_step = dg.data.ptr, B * spec.gates * H * dg.itemsize
    w_ptr, dh_ptr = w_hh.data.ptr, dh.data.ptr
    projection = (_ProjectionStep(spec, "backward", buffers, dims, expectations)
                  if spec.projected else None)
    dropout = None
    if "rmask" in buffers:
        dropout = _RecurrentDropout("backward", buffers, dims)
        dhrec = buffers["dhrec"]
        gemm = GemmPlan(dg[0], w_hh, dhrec, what=f"{spec.cell} dhr = {recurrent}_t W_hh")
        dh_ptr = dhrec.data.ptr
    for t in time_steps(T, name, reverse=True):
        if projection is not None:
            projection.launch_at(t)
            projection.gemm_at(t)
        step.launch_at(t)
        gemm(g_ptr + t * g_step, w_ptr, dh_ptr)
        if dropout is not None:
            dropout.add_gradient()


def run_persistent(spec: CellSpec, plan: persistent.PersistentPlan, buffers: Buffers,
                   dims: Dims, allow_tf32: bool) -> None:
    """Every step of ``plan.direction`` in one cooperative launch of the cell's persistent
    kernel; backward updates the state gradients in place (they enter as dL/d(state)_T and
    leave as dL/d(state)_0)."""
    sizes = (np.int32(dims.T), np.int32(dims.B), np.int32(dims.H))
    persistent.launch(plan, arguments(spec, plan.direction, "persistent", buffers) + sizes,
                      allow_tf32)


def _check_persistent(spec: CellSpec, masked: bool, zoned: bool) -> None:
    """A ValueError unless the persistent kernels can run this call: the spec's options
    (:attr:`CellSpec.unsupported_persistent`), no recurrent dropout mask and no zoneout."""
    if spec.unsupported_persistent:
        raise ValueError(f"algo: 'persistent' cannot run this call: "
                         f"{spec.unsupported_persistent}")
    if masked:
        raise ValueError("algo: 'persistent' takes no recurrent dropout mask (the persistent "
                         "kernels read h_{t-1} itself); use 'graph' or 'alternating'")
    if zoned:
        raise ValueError("algo: 'persistent' takes no zoneout masks; use 'graph' or "
                         "'alternating'")


def _cell_weights(spec: CellSpec, weights: dict[str, Any], dims: Dims) -> Buffers:
    """The cell's own weights (:attr:`CellSpec.weights`) in the accumulator dtype, each checked
    against its buffer's size; a one-element stand-in for one the options leave unread."""
    import cupy

    out = {}
    sizes = {"C": peephole_size(spec, dims.H), "G": spec.gates * dims.H, "H": dims.H}
    for name in spec.weights:
        (size,) = (sizes[n] for n in spec.buffer(name).shape)
        given = weights.get(name)
        if given is None:
            if name != "w_ch" or spec.options.peephole:
                raise ValueError(f"{name}: expected a ({size},) array for the "
                                 f"{spec.variant} LSTM, got None")
            out[name] = cupy.zeros((1,), acc_dtype(dims.dtype))
            continue
        if tuple(given.shape) != (size,) or dtype_name(given.dtype) != dims.dtype:
            raise ValueError(f"{name}: expected shape ({size},) dtype {dims.dtype}, "
                             f"got {tuple(given.shape)} {dtype_name(given.dtype)}")
        out[name] = to_acc(given)
    return out


def _projection_weight(spec: CellSpec, w_hr: Any, dims: Dims) -> Buffers:
    """{"w_hr": W_hr} (P, H), checked and C-contiguous, for a projected cell; {} otherwise."""
    if not spec.projected:
        return {}
    shape = (dims.P, dims.H)
    if w_hr is None or tuple(w_hr.shape) != shape or dtype_name(w_hr.dtype) != dims.dtype:
        given = "None" if w_hr is None else f"{tuple(w_hr.shape)} {dtype_name(w_hr.dtype)}"
        raise ValueError(f"w_hr: expected shape {shape} dtype {dims.dtype}, "
                         f"got {given}")
    return {"w_hr": contiguous(w_hr)[0]}


def _recurrent_mask(mask: Any, dims: Dims) -> Buffers:
    """{"rmask": the (B, P) recurrent dropout mask}, checked and C-contiguous; {} for None."""
    if mask is None:
        return {}
    if tuple(mask.shape) != (dims.B, dims.P) or dtype_name(mask.dtype) != dims.dtype:
        raise ValueError(f"recurrent_mask: expected shape {(dims.B, dims.P)} dtype "
                         f"{dims.dtype}, got {tuple(mask.shape)} {dtype_name(mask.dtype)}")
    return {"rmask": contiguous(mask)[0]}


def zoneout_arguments(**masks: Any) -> dict[str, Any]:
    """The cell functions' zoneout keywords as :func:`forward` takes them: by buffer name
    ("zh", "zc"), the absent ones left out."""
    return {name: mask for name, mask in masks.items() if mask is not None}


def _zoneout_masks(spec: CellSpec, zoneout: dict[str, Any],
                   dims: Dims) -> tuple[Buffers, dict[str, float]]:
    """The zoneout masks by buffer name ("zh", "zc"), each (T, B, size of its state) in the
    storage dtype and C-contiguous, and the probabilities given as floats instead (eval
    mode's expectations, which the kernels take as scalars)."""
    out, expectations = {}, {}
    sizes = dict(zip(spec.zoneout, (dims.P, dims.H)))
    for name, mask in zoneout.items():
        if name not in sizes:
            raise ValueError(f"zoneout: expected masks named in {spec.zoneout}, got {name!r}")
        shape = (dims.T, dims.B, sizes[name])
        if isinstance(mask, float):
            expectations[name] = mask
            continue
        if tuple(mask.shape) != shape or dtype_name(mask.dtype) != dims.dtype:
            raise ValueError(f"{name}: expected a zoneout mask of shape {shape} dtype "
                             f"{dims.dtype}, got {tuple(mask.shape)} {dtype_name(mask.dtype)}")
        out[name] = contiguous(mask)[0]
    return out, expectations


def _projection_inputs(spec: CellSpec, x: Any, w_ih: Any, b_ih: Any, b_hh: Any,
                       dims: Dims, op: str, ln_ih: Any = None) -> Buffers:
    """Xp (and the GRU's b_hh buffer "bh", zeros without bias; the layer-normalised LSTM's
    "xhat" and "xrstd", normalised with the gain ``ln_ih``) for one forward call."""
    import cupy

    if spec.options.layer_norm:  # the bias is added after the normalisation
        raw = input_projection(x, w_ih, None, dims, spec.gates, op)
        return layer_norm.input_projection(raw, ln_ih, summed_bias(b_ih, b_hh), dims.dtype)
    if not spec.bias_in_kernel:
        return {"xp": input_projection(x, w_ih, summed_bias(b_ih, b_hh), dims, spec.gates, op)}
    bias_ih = None if b_ih is None else to_acc(b_ih)
    bh = (cupy.zeros((spec.gates * dims.H,), acc_dtype(dims.dtype)) if b_hh is None
          else to_acc(b_hh))
    return {"xp": input_projection(x, w_ih, bias_ih, dims, spec.gates, op), "bh": bh}


def forward(
    spec: CellSpec,
    x: Any,
    states: Sequence[Any],
    w_ih: Any,
    w_hh: Any,
    b_ih: Any,
    b_hh: Any,
    lengths: Any,
    *,
    name: str,
    algo: str,
    graphs: GraphCache | None,
    weights: dict[str, Any] | None = None,
    recurrent_mask: Any = None,
    zoneout: dict[str, Any] | None = None,
) -> tuple[Any, tuple[Any, ...], SequenceCache]:
    """Run one layer-direction of ``spec``'s cell over a time-major sequence.

    ``states`` are the initial states in the order of ``spec.states``; ``weights`` the cell's
    own weights by buffer name (the LSTM's "w_ch" with peepholes, "w_hr" with a projection,
    in the storage dtype); ``recurrent_mask`` the (B, P) recurrent dropout mask in the
    storage dtype, or None; ``zoneout`` the zoneout masks by buffer name
    (:attr:`CellSpec.zoneout`; 1 keeps the previous value), (T, B, size of the state) in the
    storage dtype or a float for their expectation, none for no zoneout; the other arguments are
    those of :func:`cuda_rnn.cuda.lstm.lstm_forward`. Returns y, the final states (fresh
    arrays, in the order of ``spec.states``) and the cache for :func:`backward`.
    """
    check_step_loop(algo, graphs, spec.cell)
    masked = recurrent_mask is not None
    zoneout = zoneout or {}
    if algo == "persistent":
        _check_persistent(spec, masked, bool(zoneout))
    initial = {f"{s}0": state for s, state in zip(spec.states, states)}
    dims = check_inputs(x, initial, w_ih, w_hh, b_ih, b_hh, spec.gates, spec.projected)
    plan = (persistent.require_plan(spec.cell, "forward", dims.H, dims.B, dims.dtype)
            if algo == "persistent" else None)
    extra = ("hm",) if masked else ()
    op = f"{spec.cell}_forward"
    with nvtx_range(name), device_errors(dims.describe(op)):
        x, w_ih, w_hh = contiguous(x, w_ih, w_hh)
        zones, expectations = _zoneout_masks(spec, zoneout, dims)
        projected = _projection_inputs(spec, x, w_ih, b_ih, b_hh, dims, op,
                                       (weights or {}).get("ln_ih"))
        norms = {n: projected.pop(n) for n in spec.input_norms}  # not the loop's: no copy
        inputs = {"w_hh": w_hh, "lengths": step_lengths(lengths, dims),
                  **_cell_weights(spec, weights or {}, dims),
                  **_projection_weight(spec, (weights or {}).get("w_hr"), dims),
                  **_recurrent_mask(recurrent_mask, dims), **zones,
                  **projected}
        optional = (("rmask",) if masked else ()) + tuple(zones)
        if algo == "graph":  # the probabilities are baked into the captured launches
            out = graphs.run(graph_key(spec, "forward", dims) + optional
                             + tuple(sorted(expectations.items())),
                             lambda: _static_forward_buffers(spec, dims, f"{op} graph",
                                                             extra + tuple(inputs)),
                             lambda buffers: run_forward_steps(spec, buffers, dims, name,
                                                               expectations),
                             {**inputs, **initial}, ("y",) + spec.saved)
        else:
            out = {**allocate(
                spec, [n for n in spec.names("forward") + extra if n not in inputs], dims, op),
                   **inputs}
            for s in spec.states:
                out[s][0] = initial[f"{s}0"]
            if plan is not None:
                run_persistent(spec, plan, out, dims, tf32_allowed())
            else:
                run_forward_steps(spec, out, dims, name, expectations)
        finals = tuple(out[s][dims.T].copy() for s in spec.states)
    saved = {n: out[n] for n in spec.saved} | {
        n: inputs[n] for n in spec.weights + (("w_hr",) if spec.projected else ()) + optional}
    if spec.options.layer_norm:
        saved.update(norms, ln_ih=weights["ln_ih"])
    cache = SequenceCache(spec, x, w_ih, w_hh, inputs["lengths"], saved, b_ih is not None,
                          dims, expectations)
    return out["y"], finals, cache


def _static_forward_buffers(spec: CellSpec, dims: Dims, op: str,
                            extra: tuple[str, ...] = ()) -> Buffers:
    """A captured forward loop's buffers (the spec's, and ``extra`` ones), with views "h0"
    (, "c0") on row 0 of each state so that the initial states are copied straight in."""
    buffers = allocate(spec, tuple(dict.fromkeys(spec.names("forward") + extra)), dims, op)
    buffers.update({f"{s}0": buffers[s][0] for s in spec.states})
    return buffers


def backward(
    cell: str,
    dy: Any,
    dstates: Sequence[Any],
    cache: SequenceCache,
    *,
    name: str,
    algo: str,
    graphs: GraphCache | None,
) -> tuple[Any, tuple[Any, ...], Any, Any, Any, Any, Buffers]:
    """Backpropagate through time over the sequence of the matching :func:`forward`.

    ``cell`` is the cell the caller expects the cache to be of; ``dstates`` are the gradients
    with respect to the final states (None: zeros) in the order of ``spec.states``. Returns
    dx, the gradients with respect to the initial states, dW_ih, dW_hh, db_ih and db_hh (the
    biases None without bias), all fresh, in the storage dtype, and last the step loop's
    gradient buffers by name (:attr:`CellSpec.grads`, and "dhr" with a projection), from
    which a cell forms the gradients of its own weights.

    Raises
    ------
    ValueError
        For a cache of another cell, a dy that does not match the forward, or an ``algo``
        that cannot run.
    """
    spec, dims = cache.spec, cache.dims
    if spec.cell != cell:
        raise ValueError(f"cache: expected one from {cell}_forward, "
                         f"got one from {spec.cell}_forward")
    check_step_loop(algo, graphs, cell)
    check_dy(dy, dims, cache.x.dtype)
    masked = "rmask" in cache.saved
    zones = tuple(n for n in spec.zoneout if n in cache.saved)
    expectations = cache.expectations
    if algo == "persistent":
        _check_persistent(spec, masked, bool(cache.zoned))
    plan = (persistent.require_plan(cell, "backward", dims.H, dims.B, dims.dtype)
            if algo == "persistent" else None)
    op = f"{cell}_backward"
    state_grads = tuple(f"d{s}" for s in spec.states)
    with nvtx_range(name), device_errors(dims.describe(op)):
        (dy,) = contiguous(dy)
        names = spec.names("backward") + (("rmask", "dhrec") if masked else ()) + zones
        inputs = {n: cache.saved[n] for n in names if n in cache.saved}
        inputs.update({"w_hh": cache.w_hh, "lengths": cache.lengths, "dy": dy})
        sizes = {"dh": dims.P, "dc": dims.H}
        inputs.update({g: acc_state(d, dims, sizes[g]) for g, d in zip(state_grads, dstates)})
        loop_grads = tuple(dict.fromkeys(spec.grads)) + (("dhr",) if spec.projected else ())
        if algo == "graph":
            out = graphs.run(graph_key(spec, "backward", dims)
                             + (("rmask",) if masked else ()) + zones
                             + tuple(sorted(expectations.items())),
                             lambda: allocate(spec, names, dims, f"{op} graph"),
                             lambda buffers: run_backward_steps(spec, buffers, dims, name,
                                                                expectations),
                             inputs, loop_grads + state_grads)
        else:
            out = {**allocate(spec, [n for n in names if n not in inputs], dims, op), **inputs}
            if plan is not None:
                run_persistent(spec, plan, out, dims, tf32_allowed())
            else:
                run_backward_steps(spec, out, dims, name, expectations)
        d_input, d_recurrent = (out[g] for g in spec.grads[:2])
        d_bias = None
        if spec.options.layer_norm:  # dG reaches x W_ih^T through its normalisation
            d_input, d_bias = layer_norm.input_gradient(d_input, cache.saved, dims.dtype)
        h_prev = cache.saved["h"][:dims.T]
        if masked:  # the GEMMs read h~_t = h_t * m: dW_hh = sum_t dHp_t^T h~_t
            h_prev = cast(to_acc(h_prev) * to_acc(cache.saved["rmask"]), dims.dtype)
        dx, dw_ih, dw_hh, db_ih, db_hh = backward_gemms(
            d_input, d_recurrent, cache.x, cache.w_ih, h_prev, cache.has_bias, dims, op,
            d_bias)
        d_initial = tuple(cast(out[g], dims.dtype) for g in state_grads)
    return dx, d_initial, dw_ih, dw_hh, db_ih, db_hh, {g: out[g] for g in loop_grads}
