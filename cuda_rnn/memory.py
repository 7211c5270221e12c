"""How much memory a forward needs and how much is free, so that a forward too large for the
machine stops with a MemoryError naming the sizes before it allocates anything.

On the host this matters most: Linux hands out memory it does not have and kills the process
later, when the pages are touched, with no Python error at all.
"""
from __future__ import annotations

import os

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
) -> int:
    """An estimate of the peak bytes one forward of a layer stack allocates.

    Every layer and direction keeps for backward its gates (G*H per step and batch row), one
    more H-wide buffer (tanh(c), W_hn h or the activation) and its states ((T+1) steps of
    ``states`` * H), and every layer its output (D*H); on top come the contiguous input (I)
    and, for one layer-direction at a time, the input projection (G*H) and two copies of W_hh
    (the NumPy LSTM scales and transposes it). On the NumPy path this is within 15% of an
    LSTM forward's traced peak; for GRU and RNN, which copy no weights, it is higher by those
    two copies.
    """
    G, H, D, L = gates * hidden_size, hidden_size, directions, num_layers
    per_row = L * D * (G + H) + L * D * H + input_size + G
    state_rows = L * D * states * H * (steps + 1) * batch
    weights = 2 * G * H
    return itemsize * (steps * batch * per_row + state_rows + weights)


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
