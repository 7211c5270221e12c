"""What the three CUDA cells share: argument checks, the input projection, step iteration."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from ..profiling import step_range, step_ranges_enabled
from .blas import matmul_into
from .dtypes import acc_dtype, cast, dtype_name, to_acc
from .workspace import empty


class Dims(NamedTuple):
    """Sizes of one layer-direction call and its storage dtype name; P is the size of h and
    y (the LSTM's proj_size with a projection, else H)."""

    T: int
    B: int
    I: int
    H: int
    dtype: str
    P: int

    def describe(self, op: str) -> str:
        """``"lstm_forward (T=.., B=.., I=.., H=.., float32)"`` for error messages (P too
        when it differs from H)."""
        proj = f", P={self.P}" if self.P != self.H else ""
        return f"{op} (T={self.T}, B={self.B}, I={self.I}, H={self.H}{proj}, {self.dtype})"


def _expect(arg: str, array: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if tuple(array.shape) != shape:
        raise ValueError(f"{arg}: expected shape {shape}, got {tuple(array.shape)}")
    if array.dtype != dtype:
        raise ValueError(f"{arg}: expected dtype {dtype} (as x), got {array.dtype}")


def check_inputs(
    x: Any, states: dict[str, Any], w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, gates: int,
    projected: bool = False,
) -> Dims:
    """Check shapes and dtypes of a forward call and return its sizes.

    H is read from W_hh's columns, or with ``projected`` (h = W_hr m has P units) from
    W_ih's rows, and P from W_hh's columns; the state ``h0`` is (B, P), the others (B, H).

    Raises
    ------
    ValueError
        Naming the argument, the expected and the given shape or dtype.
    """
    if x.ndim != 3:
        raise ValueError(f"x: expected shape (T, B, I), got {tuple(x.shape)}")
    name = dtype_name(x.dtype)
    T, B, I = x.shape
    if w_hh.ndim != 2:
        raise ValueError(f"w_hh: expected shape ({gates}*H, H), got {tuple(w_hh.shape)}")
    P = w_hh.shape[1]
    if projected:
        if w_ih.ndim != 2 or w_ih.shape[0] % gates:
            raise ValueError(f"w_ih: expected shape ({gates}*H, I), got {tuple(w_ih.shape)}")
        H = w_ih.shape[0] // gates
    else:
        H = P
    G = gates * H
    _expect("w_hh", w_hh, (G, P), x.dtype)
    _expect("w_ih", w_ih, (G, I), x.dtype)
    for arg, bias in (("b_ih", b_ih), ("b_hh", b_hh)):
        if bias is not None:
            _expect(arg, bias, (G,), x.dtype)
    for arg, state in states.items():
        _expect(arg, state, (B, P if arg == "h0" else H), x.dtype)
    if min(T, B, I, H, P) < 1:
        raise ValueError(f"x, w_hh: expected T, B, I, H >= 1, got {(T, B, I, H)}")
    return Dims(T, B, I, H, name, P)


def step_lengths(lengths: Any, dims: Dims) -> Any:
    """int32 (B,) lengths on the device; all T when ``lengths`` is None.

    Raises
    ------
    ValueError
        For lengths of the wrong shape.
    """
    import cupy

    if lengths is None:
        return cupy.full((dims.B,), dims.T, dtype=cupy.int32)
    lengths = cupy.asarray(lengths)
    if lengths.shape != (dims.B,):
        raise ValueError(f"lengths: expected shape ({dims.B},), got {tuple(lengths.shape)}")
    return cupy.ascontiguousarray(lengths, dtype=cupy.int32)


def contiguous(*arrays: Any) -> tuple[Any, ...]:
    """C-contiguous versions (no copy for arrays that already are; None passes through)."""
    import cupy

    return tuple(None if a is None else cupy.ascontiguousarray(a) for a in arrays)


def summed_bias(b_ih: Any, b_hh: Any) -> Any:
    """b_ih + b_hh in the accumulator dtype, or None when the layer has no bias."""
    present = [to_acc(b) for b in (b_ih, b_hh) if b is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else present[0] + present[1]


def input_projection(x: Any, w_ih: Any, bias: Any, dims: Dims, gates: int, op: str) -> Any:
    """Xp = x W_ih^T (+ bias) for all steps: one GEMM into an accumulator-typed (T, B, G*H)."""
    T, B, I, H, name = dims.T, dims.B, dims.I, dims.H, dims.dtype
    xp = empty((T, B, gates * H), acc_dtype(name), f"{op} input projection Xp")
    flat = xp.reshape(T * B, gates * H)
    if bias is not None:
        flat[...] = bias
    matmul_into(x.reshape(T * B, I), w_ih, flat, trans_b=True,
                beta=0.0 if bias is None else 1.0, what=f"{op} x W_ih^T")
    return xp


def acc_state(state: Any, dims: Dims, size: int) -> Any:
    """A fresh accumulator-typed (B, size) copy of a gradient state; zeros for None."""
    import cupy

    if state is None:
        return cupy.zeros((dims.B, size), acc_dtype(dims.dtype))
    return to_acc(state)


def input_gradients(dgates: Any, x: Any, w_ih: Any, dims: Dims, op: str) -> tuple[Any, Any]:
    """dW_ih = sum_t dG_t^T x_t and dX = dG W_ih: two GEMMs over all steps.

    ``dgates`` is the (T, B, G*H) gradient with respect to the input projection.
    """
    T, B, I = dims.T, dims.B, dims.I
    flat = dgates.reshape(T * B, -1)
    dw_ih = empty((flat.shape[1], I), x.dtype, f"{op} dW_ih")
    matmul_into(flat, x.reshape(T * B, I), dw_ih, trans_a=True, what=f"{op} dG^T x")
    dx = empty((T, B, I), x.dtype, f"{op} dx")
    matmul_into(flat, w_ih, dx.reshape(T * B, I), what=f"{op} dG W_ih")
    return dw_ih, dx


def recurrent_weight_gradient(dgates: Any, h_prev: Any, dims: Dims, op: str) -> Any:
    """dW_hh = sum_t dG_t^T h_{t-1}: one GEMM over all steps."""
    T, B, P = dims.T, dims.B, dims.P
    flat = dgates.reshape(T * B, -1)
    dw_hh = empty((flat.shape[1], P), dgates.dtype, f"{op} dW_hh")
    matmul_into(flat, h_prev.reshape(T * B, P), dw_hh, trans_a=True, what=f"{op} dG^T h")
    return dw_hh


def bias_gradient(dgates: Any, dims: Dims, op: str) -> Any:
    """sum over steps and batch of dG, as a ones-row GEMM so it accumulates in float."""
    import cupy

    T, B = dims.T, dims.B
    flat = dgates.reshape(T * B, -1)
    ones = cast(cupy.ones((1, T * B), acc_dtype(dims.dtype)), dims.dtype)
    db = empty((1, flat.shape[1]), dgates.dtype, f"{op} bias gradient")
    matmul_into(ones, flat, db, what=f"{op} 1^T dG")
    return db.reshape(-1)


def check_dy(dy: Any, dims: Dims, dtype: Any) -> None:
    """Check the dy of a backward call against its forward's sizes and storage dtype.

    Raises
    ------
    ValueError
        Naming dy, the expected and the given shape and dtype.
    """
    T, B, P = dims.T, dims.B, dims.P
    if tuple(dy.shape) != (T, B, P) or dy.dtype != dtype:
        raise ValueError(f"dy: expected shape {(T, B, P)} dtype {dtype}, "
                         f"got {tuple(dy.shape)} {dy.dtype}")


def backward_gemms(d_input: Any, d_recurrent: Any, x: Any, w_ih: Any, h_prev: Any,
                   has_bias: bool, dims: Dims, op: str,
                   d_bias: Any = None) -> tuple[Any, Any, Any, Any, Any]:
    """The GEMMs after a backward step loop, over all steps at once.

    ``d_input`` and ``d_recurrent`` are the (T, B, G*H) gradients with respect to the input
    projection and to the recurrent projection: one array for the LSTM and the RNN, two for
    the GRU (whose reset gate scales only the recurrent side). ``x`` and ``w_ih`` are the
    forward's input and input weights, ``h_prev`` its (T, B, H) states h_0 .. h_{T-1};
    ``d_bias`` the bias gradient where the biases are not added to the projections (the
    layer-normalised LSTM), else None. Returns (dx, dW_ih, dW_hh, db_ih, db_hh), the biases
    None without bias.
    """
    dw_ih, dx = input_gradients(d_input, x, w_ih, dims, op)
    dw_hh = recurrent_weight_gradient(d_recurrent, h_prev, dims, op)
    if not has_bias:
        return dx, dw_ih, dw_hh, None, None
    if d_bias is not None:
        return dx, dw_ih, dw_hh, d_bias, d_bias.copy()
    db_ih = bias_gradient(d_input, dims, op)
    db_hh = db_ih.copy() if d_recurrent is d_input else bias_gradient(d_recurrent, dims, op)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def time_steps(T: int, name: str, reverse: bool = False) -> Iterator[int]:
    """Steps 0..T-1 (or back), each inside an NVTX range ``{name}/t{t}`` when enabled."""
    order = range(T - 1, -1, -1) if reverse else range(T)
    if not step_ranges_enabled():
        yield from order
        return
    for t in order:
        with step_range(name, t):
            yield t
