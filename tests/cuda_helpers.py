"""Helpers for testing the CUDA path against the NumPy reference (used by the test_cuda_* files).

The reference runs in float64 on exactly the values the GPU sees: inputs are rounded to the
storage dtype first and widened back, so only the GPU's own arithmetic is measured.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from cuda_rnn.cuda.dtypes import cast, to_float32

#: Largest error allowed, relative to max(largest magnitude of the reference array, 1).
TOLERANCES: dict[str, float] = {
    "float64": 1e-10,
    "float32": 1e-5,
    "float16": 2e-2,
    "bfloat16": 2e-2,
}


def to_device(a: np.ndarray | None, dtype: str) -> tuple[Any, np.ndarray | None]:
    """(device array in storage ``dtype``, float64 NumPy copy of exactly its values)."""
    if a is None:
        return None, None
    device = cast(np.asarray(a), dtype)
    return device, to_host64(device)


def to_host64(a: Any) -> np.ndarray | None:
    """A float64 NumPy copy of a device storage array (None passes through)."""
    if a is None:
        return None
    if a.dtype == np.float64:
        return a.get()
    return to_float32(a).get().astype(np.float64)


def assert_matches(got: Any, want: np.ndarray | None, dtype: str, what: str) -> None:
    """Assert a device result equals the float64 reference within the dtype's tolerance.

    Raises
    ------
    AssertionError
        Naming ``what``, the worst error, the allowed error and where it occurred.
    """
    if want is None:
        assert got is None, f"{what}: expected None, got an array"
        return
    assert got is not None, f"{what}: expected an array, got None"
    host = to_host64(got)
    assert host.shape == want.shape, f"{what}: shape {host.shape}, expected {want.shape}"
    assert np.isfinite(host).all(), f"{what}: {np.count_nonzero(~np.isfinite(host))} non-finite"
    # The tests' inputs are O(1), so rounding errors are O(1) * eps even where a sum of O(1)
    # terms cancels to a small value (a single-element bias or dx with H = 1): measure
    # against the larger of the reference's largest magnitude and 1.
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1.0)
    allowed = TOLERANCES[dtype] * scale
    err = np.abs(host - want)
    worst = float(err.max()) if err.size else 0.0
    where = np.unravel_index(int(err.argmax()), err.shape) if err.size else ()
    assert worst <= allowed, (
        f"{what} ({dtype}): max error {worst:.3g} > {allowed:.3g} at {where} "
        f"(got {host[where] if err.size else None}, want {want[where] if err.size else None})"
    )


def random_problem(rng: np.random.Generator, shape: tuple[int, int, int, int], gates: int,
                   bias: bool, with_lengths: bool, *, proj: int = 0,
                   peepholes: int = 0) -> dict[str, np.ndarray | None]:
    """Inputs, weights and output gradients of one layer-direction, float64 on the host.

    shape : (T, B, I, H); gates : G; proj : P for a projection (w_hr (P, H); h, y P wide);
    peepholes : the gates with a peephole weight (w_ch ((peepholes) * H,)), 0 for none. The
    lengths (when asked for) include T at a random row, the weights are U(-1/sqrt(H), ..).
    """
    T, B, I, H = shape
    P = proj or H
    k = 1.0 / np.sqrt(H)
    lengths = None
    if with_lengths:
        lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
        lengths[rng.integers(B)] = T
    return {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, P)) * 0.5,
        "c0": rng.standard_normal((B, H)) * 0.5,
        "w_ih": rng.uniform(-k, k, (gates * H, I)),
        "w_hh": rng.uniform(-k, k, (gates * H, P)),
        "b_ih": rng.uniform(-k, k, gates * H) if bias else None,
        "b_hh": rng.uniform(-k, k, gates * H) if bias else None,
        "w_hr": rng.uniform(-k, k, (P, H)) if proj else None,
        "w_ch": rng.uniform(-1, 1, peepholes * H) if peepholes else None,
        "dy": rng.standard_normal((T, B, P)),
        "dh_n": rng.standard_normal((B, P)),
        "dc_n": rng.standard_normal((B, H)),
        "lengths": lengths,
    }


def problem_on_device(p: dict[str, np.ndarray | None],
                      dtype: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(device arrays, their float64 host values) of a :func:`random_problem`; lengths go
    over as int32, unrounded."""
    import cupy

    dev, host = {}, {}
    for key, value in p.items():
        if key == "lengths":
            dev[key] = None if value is None else cupy.asarray(value)
            host[key] = value
        else:
            dev[key], host[key] = to_device(value, dtype)
    return dev, host
