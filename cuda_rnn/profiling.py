"""NVTX ranges, so an Nsight Systems timeline names every layer, direction and (optionally) step.

Layer ranges are always on; they cost about a microsecond each and nothing without a profiler
attached. Per-step ranges are off unless ``CUDA_RNN_NVTX_STEPS=1`` is set (read at import),
since a range per step is as costly as the step itself.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import nvtx

_DOMAIN = "cuda_rnn"
_step_ranges = os.environ.get("CUDA_RNN_NVTX_STEPS", "0") not in ("", "0")


def step_ranges_enabled() -> bool:
    """Whether per-time-step NVTX ranges are on."""
    return _step_ranges


def nvtx_range(name: str) -> contextlib.AbstractContextManager:
    """A range such as ``cuda_rnn/lstm/forward/l0`` in the cuda_rnn NVTX domain."""
    return nvtx.annotate(name, domain=_DOMAIN)


@contextlib.contextmanager
def step_range(name: str, t: int) -> Iterator[None]:
    """A per-step range ``{name}/t{t}`` when step ranges are on, nothing otherwise."""
    if not _step_ranges:
        yield
        return
    with nvtx.annotate(f"{name}/t{t}", domain=_DOMAIN):
        yield
