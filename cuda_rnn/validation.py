"""Argument checks shared by the layers and cells; every error names the argument and the
expected and given values."""
from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import to_numpy


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int, which must be >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def probability(value: Any, name: str) -> float:
    """``value`` as a float in [0, 1)."""
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}") from None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return p


def check_proj_size(proj_size: Any, hidden_size: Any) -> None:
    """A ValueError unless ``proj_size`` is an int in [0, hidden_size) (torch.nn.LSTM's rule)."""
    ok = isinstance(proj_size, (int, np.integer)) and not isinstance(proj_size, bool)
    if not ok or proj_size < 0 or (proj_size and proj_size >= hidden_size):
        raise ValueError(f"proj_size: expected an int, 0 or in [1, hidden_size={hidden_size}), "
                         f"got {proj_size!r}")


def choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    """``value``, which must be one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {allowed}, got {value!r}")
    return value


def shape_of(a: Any) -> tuple[int, ...]:
    """The shape of an array-like, for error messages and checks."""
    shape = getattr(a, "shape", None)
    return tuple(shape) if shape is not None else np.shape(a)


def check_shape(a: Any, expected: tuple[int, ...], name: str) -> None:
    """Raise unless ``a`` has exactly the shape ``expected``."""
    given = shape_of(a)
    if given != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)}, got {given}")


def dtype_of(a: Any) -> Any:
    """The dtype of an array-like: a NumPy dtype, or a torch dtype for a torch tensor."""
    dtype = getattr(a, "dtype", None)
    if dtype is None:
        return np.asarray(a).dtype
    try:
        return np.dtype(dtype)
    except TypeError:
        return dtype


def check_floating(a: Any, name: str, storage: Any = None) -> None:
    """Raise unless ``a`` holds floating-point numbers, of any precision.

    Integer, bool, complex, string and object arrays are refused rather than cast: a cast
    would drop an imaginary part or make numbers of labels. ``storage`` is the dtype the
    caller stores its own arrays in, accepted as well (bfloat16 may be kept as uint16 bits).
    """
    dtype = dtype_of(a)
    if isinstance(dtype, np.dtype):
        floating = dtype.kind == "f" or dtype.name == "bfloat16"
    else:
        floating = bool(getattr(dtype, "is_floating_point", False))
    if not floating and (storage is None or dtype != np.dtype(storage)):
        raise ValueError(f"{name}: expected a floating-point array, got dtype {dtype}")


def check_finite(a: Any, name: str) -> None:
    """Raise unless every element of the floating array ``a`` is finite (no NaN, no inf)."""
    values = to_numpy(a)
    if values.dtype.kind != "f" and values.dtype.name != "bfloat16":
        return  # storage bits (bfloat16 as uint16) carry no NaN a NumPy test can see
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ValueError(
            f"{name}: expected finite values, got {bad} NaN or inf of {values.size}"
        )


def check_state_dict(
    state_dict: dict[str, Any], expected: dict[str, tuple[int, ...]], storage: Any = None
) -> None:
    """Raise unless ``state_dict`` has exactly the keys of ``expected``, each of its shape,
    holding finite floating-point values (``storage``: as for :func:`check_floating`)."""
    missing = sorted(set(expected) - set(state_dict))
    extra = sorted(set(state_dict) - set(expected))
    if missing or extra:
        raise ValueError(
            f"state_dict: expected keys {sorted(expected)}, missing {missing}, unexpected {extra}"
        )
    for name, shape in expected.items():
        check_shape(state_dict[name], shape, f"state_dict[{name!r}]")
        check_floating(state_dict[name], f"state_dict[{name!r}]", storage)
        check_finite(state_dict[name], f"state_dict[{name!r}]")


def state_parts(state: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    """A recurrent state as one entry per name: None -> all None, one array for one name,
    a pair (h, c) for two."""
    if state is None:
        return (None,) * len(names)
    if len(names) == 1:
        return (state,)
    if not isinstance(state, (tuple, list)) or len(state) != len(names):
        raise ValueError(
            f"state: expected a pair ({', '.join(names)}) or None, got {type(state).__name__}"
        )
    return tuple(state)


def lengths_array(lengths: Any, batch: int, steps: int) -> np.ndarray:
    """Validate per-sequence lengths: shape (batch,), integers in [1, steps]; returns int64."""
    given = to_numpy(lengths)
    if given.shape != (batch,):
        raise ValueError(f"lengths: expected shape ({batch},) (one per sequence), got {given.shape}")
    if given.dtype.kind not in "iu" and not (
        given.dtype.kind == "f" and np.all(np.equal(np.mod(given, 1), 0))
    ):
        raise ValueError(f"lengths: expected integers, got dtype {given.dtype}")
    out = given.astype(np.int64)
    if out.size and (out.min() < 1 or out.max() > steps):
        raise ValueError(
            f"lengths: expected integers in [1, T={steps}], got min {out.min()} and max {out.max()}"
        )
    return out
