"""The masks of the recurrent regularisers of :class:`cuda_rnn.cellspec.Options`, drawn for
one layer-direction's forward (or one cell's step) from the layer's (cell's) generator.

Every mask is drawn on the host from ``layer.rng`` in a fixed order (W_hh's, then zoneout of
h, zoneout of c, recurrent dropout), so assigning the same generator state before a forward
reproduces every mask, on every device. In eval mode nothing is drawn: zoneout is replaced
by its expectation (a float the cell functions take), the dropouts by nothing (their
expectation is the identity). :func:`apply` puts what was drawn on the layer's or cell's
device.
"""
from __future__ import annotations

from collections.abc import Sequence
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


#: The regularisers whose masks hold for a whole sequence (one per forward of a layer), and
#: those drawn for every step.
PER_SEQUENCE = ("weight_dropout", "recurrent_dropout")
PER_STEP = ("zoneout", "zoneout_cell")


def draw(spec: CellSpec, rng: np.random.Generator, steps: int, batch: int, hidden: int,
         training: bool, only: tuple[str, ...] = PER_SEQUENCE + PER_STEP) -> Masks:
    """The masks of one layer-direction's forward over ``steps`` x ``batch``.

    Zoneout masks are 1 where a unit keeps its previous value (probability p), of shape
    (T, B, P') for h and (T, B, H) for the LSTM's c; the recurrent dropout mask is (B, P'),
    one for every step. ``only`` names the regularisers to draw (the others are left out);
    the order of the draws is fixed whatever it holds.
    """
    o = spec.options
    p = {name: getattr(o, name) if name in only else 0.0 for name in PER_SEQUENCE + PER_STEP}
    P = spec.output_size(hidden)
    if not training:
        cell = {name: p[name] for name in PER_STEP if p[name] > 0}
        return Masks(cell, None)
    weight = None
    if p["weight_dropout"] > 0:
        weight = _keep(rng, p["weight_dropout"], (spec.gates * hidden, P))
    cell: dict[str, Any] = {}
    if p["zoneout"] > 0:
        cell["zoneout"] = (rng.random((steps, batch, P)) < p["zoneout"]).astype(np.float64)
    if p["zoneout_cell"] > 0:
        cell["zoneout_cell"] = (rng.random((steps, batch, hidden)) < p["zoneout_cell"]).astype(
            np.float64)
    if p["recurrent_dropout"] > 0:
        cell["recurrent_mask"] = _keep(rng, p["recurrent_dropout"], (batch, P))
    return Masks(cell, weight)


def apply(drawn: Masks, weights: Sequence[Any], backend: Any,
          dtype: str) -> tuple[list[Any], dict[str, Any], Any]:
    """``drawn`` on the device of ``backend`` in ``dtype``: the weights with W_hh (index 1)
    masked by weight dropout, the cell functions' masks (zoneout's expectations stay
    floats), and the W_hh mask for the gradient (None without weight dropout)."""
    weights = list(weights)
    w_mask = None
    if drawn.weight is not None:
        w_mask = backend.asarray(drawn.weight, dtype)
        weights[1] = backend.multiply(weights[1], w_mask)
    masks = {k: v if isinstance(v, float) else backend.asarray(v, dtype)
             for k, v in drawn.cell.items()}
    return weights, masks, w_mask
