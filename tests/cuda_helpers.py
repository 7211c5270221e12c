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
