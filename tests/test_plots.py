"""Loss plots a reader can read values off: labelled log-axis ticks, the final test loss named."""
from __future__ import annotations

import numpy as np
import pytest

from cuda_rnn.train import History

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.figure import Figure  # noqa: E402

from cuda_rnn.plots import draw_loss_curves  # noqa: E402


def _labels(ax: object) -> list[float]:
    """The values of the y tick labels drawn inside the axes."""
    ax.figure.canvas.draw()
    lo, hi = ax.get_ylim()
    return [float(t.get_text()) for t, v in zip(ax.get_yticklabels(), ax.get_yticks())
            if t.get_text() and lo <= v <= hi]


@pytest.mark.parametrize("start, end", [(4.2, 1.6), (0.17, 3e-4)])
def test_a_log_loss_axis_has_labels_near_the_final_value(
    rng: np.random.Generator, start: float, end: float
) -> None:
    steps = 3000
    decay = np.exp(-np.arange(steps) / rng.uniform(200, 400))
    loss = end + (start - end) * decay * rng.uniform(0.98, 1.02, steps)
    evals = [1000, 2000, 3000]
    final = float(loss[-1] * rng.uniform(0.99, 1.01))
    history = History(loss=list(loss), eval_step=evals,
                      eval_loss=[float(loss[999]), float(loss[1999]), final])
    ax = Figure().add_subplot()
    draw_loss_curves(ax, {"lstm": history}, baseline=start * 0.8)
    labels = _labels(ax)
    assert len(labels) >= 5, labels
    nearest = min(abs(np.log(v / final)) for v in labels)
    assert nearest < np.log(2.0), (labels, final)
    assert f"lstm test ({final:.4g} at step 3000)" in ax.get_legend_handles_labels()[1]
