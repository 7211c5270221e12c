"""The ``algo=`` choice of the CUDA layers: which step loop runs a layer-direction.

- "alternating": per step one cuBLAS GEMM and one fused pointwise launch from Python.
- "graph": the same step loop captured once per shape into a CUDA graph and replayed.
- "persistent": one cooperative launch runs every step (LSTM and GRU, float32 and bfloat16,
  sizes whose W_hh slice fits in shared memory across the SMs).
- "auto": per shape, by the rules below.

Asking for "persistent" where it does not fit runs "graph" instead and says why in
:attr:`AlgoChoice.reason`, which a layer exposes as ``algo_used`` / ``algo_reason``. For cell
options the persistent kernels do not run at all (the LSTM variants) "auto" runs the graph
and says why, and "persistent" is a ValueError.

The "auto" rules are the prediction written in profiles/NOTES.md ("cuda_rnn.cuda.algo: auto
rules"); replace them with the measured crossover once profiles/bench.py has run on a GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .graph import GraphCache
from .persistent import CELL_GATES, DIRECTIONS, H100, DeviceLimits, plan_persistent

ALGOS = ("alternating", "graph", "persistent", "auto")
#: What the cell functions of cuda/{rnn,lstm,gru}.py run: "auto" is resolved before them.
STEP_LOOPS = ("alternating", "graph", "persistent")
#: Set to 1 to let float32 products run in one TF32 pass (about 1e-3 relative error, like
#: cuDNN's default); unset or 0 keeps close-to-float accuracy (three TF32 passes).
TF32_ENV = "CUDA_RNN_ALLOW_TF32"
#: Below this many steps "auto" runs "alternating": a graph's capture (once per shape) and a
#: cooperative launch's set-up are not repaid by a handful of steps.
AUTO_MIN_STEPS = 4


@dataclass(frozen=True)
class AlgoChoice:
    """The algorithm that runs a layer-direction and why it was picked."""

    requested: str
    used: str
    reason: str


def check_algo(algo: str) -> str:
    """Return ``algo`` if it names an algorithm.

    Raises
    ------
    ValueError
        For anything other than the names in :data:`ALGOS`.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo: expected one of {ALGOS}, got {algo!r}")
    return algo


def check_step_loop(algo: str, graphs: GraphCache | None, cell: str) -> str:
    """Return ``algo`` if a cell function can run it as given.

    Raises
    ------
    ValueError
        For a name outside :data:`STEP_LOOPS` (including "auto", which
        :func:`choose_algo` resolves per shape), for "graph" without a :class:`GraphCache`,
        or for "persistent" on a cell without a persistent kernel.
    """
    if algo not in STEP_LOOPS:
        raise ValueError(f"algo: expected one of {STEP_LOOPS} (resolve 'auto' with "
                         f"cuda_rnn.cuda.algo.choose_algo first), got {algo!r}")
    if algo == "graph" and graphs is None:
        raise ValueError("graphs: expected a GraphCache for algo='graph', got None")
    if algo == "persistent" and cell not in CELL_GATES:
        raise ValueError(f"algo: 'persistent' runs only {tuple(CELL_GATES)}, not {cell!r}")
    return algo


def tf32_allowed() -> bool:
    """Whether float32 recurrent products may use single-pass TF32 (see :data:`TF32_ENV`).

    Raises
    ------
    ValueError
        For a value of the variable other than "", "0" or "1".
    """
    value = os.environ.get(TF32_ENV, "").strip()
    if value not in ("", "0", "1"):
        raise ValueError(f"{TF32_ENV}: expected '0' or '1', got {value!r}")
    return value == "1"


def choose_algo(
    algo: str, cell: str, direction: str, steps: int, batch: int, hidden: int, dtype: str,
    limits: DeviceLimits = H100, unsupported: str = "",
) -> AlgoChoice:
    """Pick the step loop for one layer-direction call.

    Parameters
    ----------
    algo : one of :data:`ALGOS`.
    cell : "rnn", "lstm" or "gru".
    direction : "forward" or "backward" (they are planned separately: backward keeps a
        different W_hh slice on chip and may fit where forward does not, or the reverse).
    steps, batch, hidden : T, B, H of the call.
    dtype : storage dtype name.
    limits : the device (:func:`cuda_rnn.cuda.persistent.device_limits` on a GPU).
    unsupported : why the persistent kernels cannot run the cell's options
        (:attr:`cuda_rnn.cellspec.CellSpec.unsupported_persistent`), "" when they can.

    Raises
    ------
    ValueError
        For an unknown ``algo`` or direction, sizes below 1, or "persistent" with
        ``unsupported``.
    """
    check_algo(algo)
    if steps < 1:
        raise ValueError(f"steps: expected >= 1, got {steps}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    if hidden < 1 or batch < 1:
        raise ValueError(f"hidden, batch: expected >= 1, got {hidden}, {batch}")
    if algo in ("alternating", "graph"):
        return AlgoChoice(algo, algo, "requested")
    if unsupported:
        if algo == "persistent":
            raise ValueError(f"algo: 'persistent' cannot run this layer: {unsupported}")
        if steps < AUTO_MIN_STEPS:
            return AlgoChoice(algo, "alternating",
                              f"auto: T={steps} < {AUTO_MIN_STEPS} steps, nothing to amortise")
        return AlgoChoice(algo, "graph", f"auto: {unsupported}")
    plan = plan_persistent(cell, direction, hidden, batch, dtype, limits)
    if algo == "persistent":
        if plan.fits:
            return AlgoChoice(algo, "persistent", "requested")
        return AlgoChoice(algo, "graph", f"persistent does not fit: {plan.reason}")
    if steps < AUTO_MIN_STEPS:
        return AlgoChoice(algo, "alternating",
                          f"auto: T={steps} < {AUTO_MIN_STEPS} steps, nothing to amortise")
    if plan.fits:
        return AlgoChoice(algo, "persistent",
                          f"auto: W_hh slice fits on chip ({plan.blocks} blocks of "
                          f"{plan.units_per_block} units, {plan.smem_bytes} bytes each)")
    return AlgoChoice(algo, "graph", f"auto: persistent does not fit: {plan.reason}")
