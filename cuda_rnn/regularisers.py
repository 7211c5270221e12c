"""The masks of the recurrent regularisers of :class:`cuda_rnn.cellspec.Options`, drawn for
one layer-direction's forward from the layer's generator.

Every mask is drawn on the host from ``layer.rng`` in a fixed order (W_hh's, then zoneout of
h, zoneout of c, recurrent dropout), so assigning the same generator state before a forward
reproduces every mask, on every device. In eval mode nothing is drawn: zoneout is replaced
by its expectation (a float the cell functions take), the dropouts by nothing (their
expectation is the identity).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .cellspec import CellSpec


class Masks(NamedTuple):
    """One layer-direction's regularisation.

    cell : the cell functions' keywords ("zoneout", "zoneout_cell", "recurrent_mask") with
        host arrays (training) or floats (zoneout's expectation in eval mode); empty for none.
    weight : the (G*H, P') mask of W_hh, scaled by 1 / (1 - p), or None.
    """

    cell: dict[str, Any]
    weight: np.ndarray | None


def _keep(rng: np.random.Generator, p: float, shape: tuple[int, ...]) -> np.ndarray:
    """Inverted dropout: Bernoulli(1 - p) / (1 - p)."""
    return (rng.random(shape) >= p) / (1.0 - p)


def draw(spec: CellSpec, rng: np.random.Generator, steps: int, batch: int, hidden: int,
         training: bool) -> Masks:
    """The masks of one layer-direction's forward over ``steps`` x ``batch``.

    Zoneout masks are 1 where a unit keeps its previous value (probability p), of shape
    (T, B, P') for h and (T, B, H) for the LSTM's c; the recurrent dropout mask is (B, P'),
    one for every step.
    """
    o = spec.options
    P = spec.output_size(hidden)
    if not training:
        cell = {name: p for name, p in (("zoneout", o.zoneout), ("zoneout_cell", o.zoneout_cell))
                if p > 0}
        return Masks(cell, None)
    weight = None
    if o.weight_dropout > 0:
        weight = _keep(rng, o.weight_dropout, (spec.gates * hidden, P))
    cell: dict[str, Any] = {}
    if o.zoneout > 0:
        cell["zoneout"] = (rng.random((steps, batch, P)) < o.zoneout).astype(np.float64)
    if o.zoneout_cell > 0:
        cell["zoneout_cell"] = (rng.random((steps, batch, hidden)) < o.zoneout_cell).astype(
            np.float64)
    if o.recurrent_dropout > 0:
        cell["recurrent_mask"] = _keep(rng, o.recurrent_dropout, (batch, P))
    return Masks(cell, weight)
