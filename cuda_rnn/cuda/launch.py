"""Launch shape of the step kernels and a launch that names what failed."""
from __future__ import annotations

from typing import Any

from .errors import KernelLaunchError

#: Threads per block of every pointwise kernel: a multiple of the warp size that keeps
#: several blocks resident per SM even for B * H of a few thousand.
BLOCK = 256


def pointwise_grid(elements: int) -> tuple[int]:
    """Blocks needed for one thread per element."""
    return (max(1, -(-elements // BLOCK)),)


def step_launch_shape(kind: str, rows: int, units: int,
                      itemsize: int) -> tuple[tuple[int], int]:
    """(grid, dynamic shared memory) of a step kernel of :attr:`CellSpec.step_kind` over
    ``rows`` batch rows of ``units`` units: a thread per unit ("pointwise"), or a block per
    row with one accumulator of ``itemsize`` bytes per thread for its row sums
    ("layer_norm")."""
    if kind == "layer_norm":
        return (rows,), BLOCK * itemsize
    return pointwise_grid(rows * units), 0


def launch(kernel: Any, grid: tuple[int, ...], block: tuple[int, ...], args: tuple,
           what: str, shared_mem: int = 0) -> None:
    """Launch ``kernel`` (with ``shared_mem`` bytes of dynamic shared memory); a launch
    failure becomes a :class:`KernelLaunchError` naming it.

    ``what`` names the kernel and its shapes (built once per sequence, not per step).
    """
    import cupy

    try:
        kernel(grid, block, args, shared_mem=shared_mem)
    except (cupy.cuda.driver.CUDADriverError, cupy.cuda.runtime.CUDARuntimeError) as exc:
        raise KernelLaunchError(
            f"launching {what} with grid {grid}, block {block} failed: {exc}"
        ) from exc
