"""Launch shape of the pointwise kernels and a launch that names what failed."""
from __future__ import annotations

from typing import Any

from .errors import KernelLaunchError

#: Threads per block of every pointwise kernel: a multiple of the warp size that keeps
#: several blocks resident per SM even for B * H of a few thousand.
BLOCK = 256


def pointwise_grid(elements: int) -> tuple[int]:
    """Blocks needed for one thread per element."""
    return (max(1, -(-elements // BLOCK)),)


def launch(kernel: Any, grid: tuple[int, ...], block: tuple[int, ...], args: tuple,
           what: str) -> None:
    """Launch ``kernel``; a launch failure becomes a :class:`KernelLaunchError` naming it.

    ``what`` names the kernel and its shapes (built once per sequence, not per step).
    """
    import cupy

    try:
        kernel(grid, block, args)
    except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as exc:
        raise KernelLaunchError(
            f"launching {what} with grid {grid}, block {block} failed: {exc}"
        ) from exc
