"""Host side of the persistent kernels (kernels_cu/lstm_persistent.cuh, gru_persistent.cuh).

One cooperative launch runs every step of a layer-direction. This module decides whether a
shape fits on chip (:func:`plan_persistent`, pure Python: the fit rules are testable without
a GPU), checks that every block of a plan can be resident at once, and launches the kernel
that :mod:`cuda_rnn.cuda.loader` compiled into its cooperative module.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import loader
from ..cellspec import PERSISTENT_GATES, SPECS, CellSpec

#: Threads per block, the same as persistent::kThreads in kernels_cu/persistent.cuh.
THREADS = 256
WARPS = THREADS // 32
#: Cells with a persistent kernel and their gate count G.
CELL_GATES: dict[str, int] = PERSISTENT_GATES
#: Storage dtypes with a persistent kernel (TF32 / bf16 tensor cores), with bytes per element.
ELEMENT_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2}
DIRECTIONS = ("forward", "backward")
#: K of one tensor-core instruction (elements): m16n8k8 TF32, m16n8k16 bf16.
MMA_K: dict[str, int] = {"float32": 8, "bfloat16": 16}
#: K-chunks of the staged activations are multiples of this (both MMA K values divide it).
CHUNK_ALIGN = 16
#: Smallest K-chunk worth a plan: below it the per-chunk barriers cost more than the product.
MIN_CHUNK = 64
#: Rows (M) and columns (N) of one mma output tile.
TILE_M, TILE_N = 16, 8


@dataclass(frozen=True)
class DeviceLimits:
    """What a device offers the persistent kernels."""

    sm_count: int
    smem_per_block: int  # bytes of dynamic shared memory one block may opt in to
    name: str = ""


#: H100 SXM (132 SMs, 227 KiB of shared memory per block after opt-in): the prediction target.
H100 = DeviceLimits(sm_count=132, smem_per_block=227 * 1024, name="H100 SXM")


def device_limits() -> DeviceLimits:
    """Limits of the current CuPy device (queried once per device: the layers and every
    persistent launch ask, and cudaGetDeviceProperties can take milliseconds)."""
    import cupy

    return _limits_of(cupy.cuda.Device().id)


@functools.lru_cache(maxsize=None)
def _limits_of(device_id: int) -> DeviceLimits:
    import cupy

    device = cupy.cuda.Device(device_id)
    attrs = device.attributes
    name = cupy.cuda.runtime.getDeviceProperties(device_id)["name"]
    return DeviceLimits(
        sm_count=int(attrs["MultiProcessorCount"]),
        smem_per_block=int(attrs["MaxSharedMemoryPerBlockOptin"]),
        name=name.decode() if isinstance(name, bytes) else str(name),
    )


@dataclass(frozen=True)
class PersistentPlan:
    """Launch shape and shared-memory layout of one persistent call, or why there is none.

    ``fits`` is False with ``reason`` saying what does not fit; the layout fields are then 0.
    The layout fields are the kernel's trailing int arguments (see :meth:`layout_args`).
    """

    cell: str
    direction: str
    hidden: int
    batch: int
    dtype: str
    fits: bool
    reason: str
    units_per_block: int = 0
    blocks: int = 0
    ldw: int = 0
    chunk: int = 0
    lds: int = 0
    ldr: int = 0
    ksplit: int = 0
    stage_offset: int = 0
    red_offset: int = 0
    state_offset: int = 0
    smem_bytes: int = 0

    def layout_args(self) -> tuple[np.int32, ...]:
        """The kernel arguments hs, ldw, chunk, lds, ldr, ksplit and the three offsets."""
        return tuple(
            np.int32(v)
            for v in (self.units_per_block, self.ldw, self.chunk, self.lds, self.ldr,
                      self.ksplit, self.stage_offset, self.red_offset, self.state_offset)
        )


def padded_stride(k: int, element_bytes: int) -> int:
    """Row stride (elements) for k columns: rounded up to 16 columns, then to a multiple of
    8 words plus 4, so the 8 rows one mma fragment load touches hit 8 distinct bank groups."""
    words = _ceil_to(_ceil_to(k, CHUNK_ALIGN) * element_bytes, 4) // 4
    words = _ceil_to(words, 8) + 4
    return words * 4 // element_bytes


def _ceil_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _align16(n: int) -> int:
    return _ceil_to(n, 16)


def _unit_step(spec: CellSpec, direction: str) -> int:
    # Forward the block's G * hs weight rows are the mma M: hs steps by the fewest units
    # that fill whole tiles (LSTM: 4), at most TILE_N (GRU: 8 units, 24 rows padded to a
    # second tile). Backward hs is the mma N.
    if direction == "backward":
        return TILE_N
    return min(TILE_M // math.gcd(spec.gates, TILE_M), TILE_N)


def _state_floats(spec: CellSpec, direction: str) -> int:
    # Per (unit, batch row) floats kept on chip: forward the one state the loop carries
    # (LSTM c, GRU h); backward dh, the terms of dh_{t-1} outside W_hh, and the gradients of
    # the cell's states beyond h (LSTM dc).
    if direction == "forward":
        return 1
    return len(spec.states) + 1


def plan_persistent(
    cell: str, direction: str, hidden: int, batch: int, dtype: str,
    limits: DeviceLimits = H100,
) -> PersistentPlan:
    """Whether one layer-direction fits the persistent kernel on ``limits``, and its layout.

    Rules: one block per SM at most, each owning hs = ceil(H / SMs) hidden units rounded up
    to the tile step; the block's W_hh slice (G*hs rows of H forward, hs columns of G*H
    backward) stays in shared memory with the partial-sum buffer and the on-chip state, and
    what is left holds the batch x chunk activation tile, chunk >= MIN_CHUNK columns.

    Raises
    ------
    ValueError
        For a direction other than "forward" / "backward", or hidden or batch below 1.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    if hidden < 1 or batch < 1:
        raise ValueError(f"hidden, batch: expected >= 1, got {hidden}, {batch}")
    base = dict(cell=cell, direction=direction, hidden=hidden, batch=batch, dtype=dtype)
    if cell not in CELL_GATES:
        return PersistentPlan(**base, fits=False,
                              reason=f"no persistent kernel for cell {cell!r} "
                                     f"(only {tuple(CELL_GATES)})")
    if dtype not in ELEMENT_BYTES:
        return PersistentPlan(**base, fits=False,
                              reason=f"no persistent kernel for dtype {dtype!r} "
                                     f"(only {tuple(ELEMENT_BYTES)})")
    spec = SPECS[cell]
    gates, eb = spec.gates, ELEMENT_BYTES[dtype]
    step = _unit_step(spec, direction)
    hs = _ceil_to(-(-hidden // limits.sm_count), step)
    blocks = -(-hidden // hs)
    k_total = hidden if direction == "forward" else gates * hidden
    resident_rows = gates * hs if direction == "forward" else hs
    ldw = padded_stride(k_total, eb)
    # Output tile grid: forward (G*hs rows) x (batch); backward (batch) x (hs).
    m, n = (resident_rows, batch) if direction == "forward" else (batch, resident_rows)
    mpad, npad = _ceil_to(m, TILE_M), _ceil_to(n, TILE_N)
    jobs = (mpad // TILE_M) * (npad // TILE_N)
    ksplit = max(1, WARPS // jobs)
    ldr = npad + 4
    resident = _align16(resident_rows * ldw * eb)
    red = _align16(ksplit * mpad * ldr * 4)
    state = _state_floats(spec, direction) * hs * batch * 4
    budget = limits.smem_per_block - resident - red - state
    full_chunk = _ceil_to(k_total, CHUNK_ALIGN)
    chunk = full_chunk
    while chunk >= CHUNK_ALIGN and _align16(batch * padded_stride(chunk, eb) * eb) > budget:
        chunk -= CHUNK_ALIGN
    if chunk < min(MIN_CHUNK, full_chunk):
        need = resident + red + state + _align16(batch * padded_stride(MIN_CHUNK, eb) * eb)
        return PersistentPlan(
            **base, fits=False,
            reason=(f"{direction} {cell} H={hidden} B={batch} {dtype} needs {need} bytes of "
                    f"shared memory per block ({resident} for the W_hh slice of {hs} units "
                    f"across {blocks} blocks), more than the {limits.smem_per_block} "
                    f"{limits.name or 'this device'} gives"),
        )
    ksplit = min(ksplit, chunk // MMA_K[dtype])
    red = _align16(ksplit * mpad * ldr * 4)
    lds = padded_stride(chunk, eb)
    stage = _align16(batch * lds * eb)
    return PersistentPlan(
        **base, fits=True, reason="", units_per_block=hs, blocks=blocks, ldw=ldw, chunk=chunk,
        lds=lds, ldr=ldr, ksplit=ksplit, stage_offset=resident,
        red_offset=resident + stage, state_offset=resident + stage + red,
        smem_bytes=resident + stage + red + state,
    )


def require_plan(cell: str, direction: str, hidden: int, batch: int,
                 dtype: str) -> PersistentPlan:
    """The plan of one persistent call on the current device.

    Raises
    ------
    ValueError
        When the shape does not fit (with the plan's reason); pick another algorithm with
        :func:`cuda_rnn.cuda.algo.choose_algo`, which falls back by itself.
    """
    plan = plan_persistent(cell, direction, hidden, batch, dtype, device_limits())
    if not plan.fits:
        raise ValueError(f"algo: 'persistent' cannot run this {direction} call: {plan.reason}")
    return plan


def residency_reason(kernel: Any, plan: PersistentPlan, limits: DeviceLimits) -> str:
    """Why the plan's grid cannot be resident at once on this device ("" when it can).

    A cooperative launch needs every block resident; CuPy would otherwise shrink the grid
    with only a warning, so this is checked before each launch.
    """
    import cupy

    kernel.max_dynamic_shared_size_bytes = plan.smem_bytes
    per_sm = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
        kernel.kernel.ptr, THREADS, plan.smem_bytes
    )
    if per_sm * limits.sm_count < plan.blocks:
        return (f"{plan.blocks} blocks of {THREADS} threads with {plan.smem_bytes} bytes of "
                f"shared memory: only {per_sm} per SM x {limits.sm_count} SMs can be resident")
    return ""


def launch(plan: PersistentPlan, args: tuple, allow_tf32: bool) -> None:
    """Launch the plan's kernel cooperatively with ``args`` (the arrays and sizes that come
    before the layout arguments; see the kernel headers).

    Raises
    ------
    ValueError
        For a plan that does not fit, or a grid that cannot be resident on this device.
    """
    if not plan.fits:
        raise ValueError(f"plan: expected a plan that fits, got one that does not: {plan.reason}")
    kernel = loader.get_kernel(f"{plan.cell}_persistent.cuh",
                               f"{plan.cell}_{plan.direction}_persistent", plan.dtype)
    reason = residency_reason(kernel, plan, device_limits())
    if reason:
        raise ValueError(f"plan: the grid cannot be resident: {reason}")
    kernel((plan.blocks,), (THREADS,), args + plan.layout_args() + (np.int32(allow_tf32),),
           shared_mem=plan.smem_bytes)
