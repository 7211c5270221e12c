"""The layer-normalised LSTM's work outside its step loops, in CuPy array operations over all
steps at once: the normalisation of the input projection before the loop and its backward
after it (the per-step normalisations are kernels_cu/lstm_layer_norm.cu's)."""
from __future__ import annotations

from typing import Any

from .dtypes import acc_dtype, cast, to_acc

#: The variance floor, as in :data:`cuda_rnn.reference.common.LN_EPS`.
LN_EPS = 1e-5


def normalise_rows(z: Any) -> tuple[Any, Any]:
    """(z - mean z) / sqrt(var z + eps) over the last axis (the biased variance, centred) and
    the 1 / sqrt(var + eps) of each row, both in ``z``'s dtype."""
    centred = z - z.mean(axis=-1, keepdims=True)
    rstd = 1.0 / (((centred * centred).mean(axis=-1) + LN_EPS) ** 0.5)
    return centred * rstd[..., None], rstd


def rows_backward(dzhat: Any, zhat: Any, rstd: Any) -> Any:
    """dL/dz from dL/dzhat through :func:`normalise_rows` (zhat, rstd from its forward)."""
    mean = dzhat.mean(axis=-1, keepdims=True)
    along = (dzhat * zhat).mean(axis=-1, keepdims=True)
    return rstd[..., None] * (dzhat - mean - zhat * along)


def input_projection(xp_raw: Any, ln_ih: Any, bias: Any, dtype: str) -> dict[str, Any]:
    """Xp = LN(x W_ih^T) ln_ih + bias (accumulator dtype) for the step loops, with what
    backward reads: "xhat" (storage dtype) and "xrstd"."""
    xhat, rstd = normalise_rows(xp_raw)
    xp = xhat * to_acc(ln_ih)
    if bias is not None:
        xp += bias
    return {"xp": xp.astype(acc_dtype(dtype), copy=False), "xhat": cast(xhat, dtype),
            "xrstd": rstd}


def input_gradient(d_gates: Any, saved: dict[str, Any], dtype: str) -> tuple[Any, Any]:
    """(dL/d(x W_ih^T), dL/db) from the gate gradients dG of every step: the first through
    LN(x W_ih^T) ln_ih, in the storage dtype; the second the sum of dG over steps and batch."""
    d = to_acc(d_gates)
    dxp = rows_backward(d * to_acc(saved["ln_ih"]), to_acc(saved["xhat"]), saved["xrstd"])
    return cast(dxp, dtype), cast(d.sum(axis=(0, 1)), dtype)


def parameter_gradients(loop: dict[str, Any], saved: dict[str, Any], dtype: str) -> tuple:
    """The gradients of ln_ih, ln_hh, ln_c and ln_bc: sums over steps and batch of dG * xhat,
    dG * hhat, dn * chat and dn."""
    d, dn = to_acc(loop["dgates"]), loop["dn"]
    sums = ((d * to_acc(saved["xhat"])), (d * to_acc(saved["hhat"])),
            (dn * to_acc(saved["chat"])), dn)
    return tuple(cast(s.sum(axis=(0, 1)), dtype) for s in sums)
