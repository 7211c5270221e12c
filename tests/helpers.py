"""Small helpers shared by the tests: random states and relative errors."""
from __future__ import annotations

from typing import Any

import numpy as np


def rel_err(a: Any, b: Any) -> float:
    """||a - b|| / max(||b||, tiny): the relative error of a against the reference b."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def random_state(rng: np.random.Generator, cell: str, shape: tuple[int, ...]) -> Any:
    """A random initial state of the right structure for the cell ("lstm" gets a pair)."""
    h = rng.standard_normal(shape)
    return (h, rng.standard_normal(shape)) if cell == "lstm" else h
