"""PNG plots of training runs: loss curves, and gradient norm against time step (log scale).

matplotlib is an optional extra (``pip install 'cuda_rnn[plot]'``); without it the functions
write nothing and return None, so training never fails for want of a plot.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` steps (shorter at the start), to read a noisy curve."""
    if window <= 1 or len(values) == 0:
        return values
    c = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def _save(plt: Any, fig: Any, ax: Any, path: str | Path, title: str) -> Path:
    """Title, legend and layout, then write the figure as PNG and free it."""
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss_curves(
    histories: dict[str, Any], path: str | Path, baseline: float | None = None,
    title: str = "",
) -> Path | None:
    """Training loss (smoothed) and test loss against step for each named run.

    Parameters
    ----------
    histories : run name -> :class:`cuda_rnn.train.History`.
    path : the PNG to write.
    baseline : drawn as a dashed horizontal line when given.

    Returns
    -------
    The path written, or None when matplotlib is not installed.
    """
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw_loss_curves(ax, histories, baseline)
    return _save(plt, fig, ax, path, title)


def draw_loss_curves(ax: Any, histories: dict[str, Any], baseline: float | None = None) -> None:
    """Draw :func:`plot_loss_curves`' curves on the matplotlib axes ``ax``; the legend names
    each run's last test loss."""
    for name, h in histories.items():
        loss = np.asarray(h.loss, dtype=np.float64)
        steps = np.arange(1, len(loss) + 1)
        line, = ax.plot(steps, _smooth(loss, max(1, len(loss) // 100)), label=f"{name} train")
        if len(h.eval_step):
            ax.plot(h.eval_step, h.eval_loss, "o--", color=line.get_color(), ms=3,
                    label=f"{name} test ({h.eval_loss[-1]:.4g} at step {h.eval_step[-1]})")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls=":", label=f"baseline {baseline:.3g}")
    ax.set_yscale("log")
    _label_log_axis(ax)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")


def _label_log_axis(ax: Any) -> None:
    """Label enough ticks of a log y axis to read values off it: a loss that falls from 4 to
    1.6 spans under one decade, where matplotlib labels only one or two ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    lo, hi = ax.get_ylim()
    decades = math.log10(hi / lo)
    if decades < 1:
        subs: tuple[float, ...] = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)
    elif decades < 4:
        subs = (1.0, 2.0, 5.0)
    else:
        subs = (1.0,)
    ax.yaxis.set_major_locator(LogLocator(base=10.0, subs=subs, numticks=40))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", axis="y", alpha=0.3)


def plot_grad_norms(norms: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path | None:
    """||dL/dh_t|| against time step t, log scale, one line per named curve.

    Curves whose names share a first word ("lstm init", "lstm trained") share a colour, and a
    name ending in "init" is drawn dashed, so a cell before and after training reads as a pair.

    Returns
    -------
    The path written, or None when matplotlib is not installed.
    """
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours: dict[str, str] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name, n in norms.items():
        n = np.asarray(n, dtype=np.float64)
        group = name.split()[0] if name.split() else name
        colour = colours.setdefault(group, palette[len(colours) % len(palette)])
        # A norm that underflowed to 0 cannot be drawn on a log axis; leave a gap instead.
        ax.plot(np.arange(len(n)), np.where(n > 0, n, np.nan), label=name, color=colour,
                ls="--" if name.endswith("init") else "-")
    ax.set_yscale("log")
    ax.set_xlabel("time step t (loss at the last step)")
    ax.set_ylabel("||dL/dh_t||")
    return _save(plt, fig, ax, path, title)
