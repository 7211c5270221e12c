"""How much memory a forward needs and how much is free, so that a forward too large for the
machine stops with a MemoryError naming the sizes before it allocates anything.

On the host this matters most: Linux hands out memory it does not have and kills the process
later, when the pages are touched, with no Python error at all.
"""
from __future__ import annotations

import os

from .cellspec import CellSpec

#: Smaller workspaces are not checked: they cannot exhaust a machine, and reading the free
#: memory on every small forward would cost time for nothing.
CHECK_ABOVE_BYTES = 256 << 20


def host_available_bytes() -> int:
    """RAM this process could take now without swapping: MemAvailable of /proc/meminfo,
    capped by a cgroup v2 memory limit; free physical pages where /proc/meminfo is missing."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read())
    except (OSError, ValueError):
        return available
    return available if limit == "max" else min(available, int(limit) - used)


def forward_bytes(
    steps: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    gates: int,
    states: int,
    num_layers: int,
    directions: int,
    itemsize: int,
    extra_per_row: int = 0,
    transient_per_row: int = 0,
    weight_copies: int = 2,
    output_size: int | None = None,
) -> int:
    """An estimate of the peak bytes one forward of a layer stack allocates.

    Every layer and direction keeps for backward its gates (G*H per step and batch row), one
    more H-wide buffer (tanh(c), W_hn h or the activation) and its states ((T+1) steps of
    ``states`` * H), and every layer its output (D*H); on top come the contiguous input (I)
    and, for one layer-direction at a time, the input projection (G*H) and ``weight_copies``
    copies of W_hh (the NumPy LSTM scales and transposes it). On the NumPy path this is within
    15% of an LSTM forward's traced peak; for GRU and RNN, which copy no weights, it is higher
    by those two copies. The keywords describe a cell's options (:func:`variant_workspace`):
    what each layer-direction saves per step and batch row beyond the plain cell, what one
    layer-direction's forward holds beside the input projection while it runs, the copies of
    W_hh it makes, and P, the size of h, y and W_hh's rows (the LSTM's proj_size; None: H).
    """
    G, H, D, L = gates * hidden_size, hidden_size, directions, num_layers
    P = output_size or H
    per_row = (L * D * (G + H + extra_per_row) + L * D * P + input_size + G
               + transient_per_row)
    state_rows = L * D * (P + (states - 1) * H) * (steps + 1) * batch
    weights = weight_copies * G * P
    return itemsize * (steps * batch * per_row + state_rows + weights)


def variant_workspace(spec: CellSpec, hidden_size: int) -> dict[str, int]:
    """The keywords of :func:`forward_bytes` for ``spec``'s options: saved per row, m with a
    projection, both normalised products and the normalised c with layer_norm, the zoneout
    masks (and c' before zoneout_cell mixes it); transient, the unnormalised input projection
    with layer_norm; one copy of W_hh with layer_norm (it normalises
    before it scales), two otherwise; and P."""
    o, H, P = spec.options, hidden_size, spec.output_size(hidden_size)
    G = spec.gates * H
    extra = ((H if o.proj_size else 0) + (2 * G + H + 3 if o.layer_norm else 0)
             + (P if o.zoneout else 0) + (2 * H if o.zoneout_cell else 0))
    return {"extra_per_row": extra, "transient_per_row": G if o.layer_norm else 0,
            "weight_copies": 1 if o.layer_norm else 2, "output_size": P}


def check_fits(needed: int, available: int, what: str) -> None:
    """Raise MemoryError when ``needed`` bytes exceed ``available`` ones.

    Raises
    ------
    MemoryError
        Naming ``what`` and both sizes.
    """
    if needed > available:
        raise MemoryError(
            f"{what}: needs about {needed / 2**30:.2f} GiB ({needed} bytes) of workspace, "
            f"{available / 2**30:.2f} GiB ({available} bytes) are available"
        )
