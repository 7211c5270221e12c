"""The "graph" algorithm: a step loop captured once per shape into a CUDA graph and replayed.

The step loops of cuda/sequence.py only launch work on buffers allocated before them
(no allocation, no host synchronisation inside), so they can be recorded with
``cupy.cuda.Stream.begin_capture`` / ``end_capture`` into a ``cupy.cuda.Graph``. A graph
replays fixed device addresses, so each captured loop owns its buffers: a :class:`GraphCache`
(one per layer) keeps, per key (cell, direction, layer, shapes, dtype), the static buffers and
the graph. Each call copies its inputs into the static buffers, replays, and copies the
outputs out, so every call still returns fresh arrays that a later call cannot overwrite.

The first call of a key runs the loop eagerly (that call's result, and the warm-up that
compiles kernels and creates library handles outside the capture), then captures it.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

Buffers = dict[str, Any]


@dataclass
class StepGraph:
    """One captured step loop and the static buffers it reads and writes."""

    buffers: Buffers
    graph: Any  # cupy.cuda.Graph

    def load(self, inputs: Mapping[str, Any]) -> None:
        """Copy each input into the static buffer of the same name.

        Raises
        ------
        ValueError
            For a name with no buffer, or a shape or dtype that differs from the buffer's.
        """
        for name, value in inputs.items():
            if name not in self.buffers:
                raise ValueError(f"inputs: expected names among {tuple(self.buffers)}, "
                                 f"got {name!r}")
            target = self.buffers[name]
            if tuple(value.shape) != tuple(target.shape) or value.dtype != target.dtype:
                raise ValueError(
                    f"{name}: expected shape {tuple(target.shape)} dtype {target.dtype}, "
                    f"got {tuple(value.shape)} {value.dtype}"
                )
            target[...] = value

    def outputs(self, names: tuple[str, ...]) -> Buffers:
        """Fresh copies of the named static buffers."""
        return {name: self.buffers[name].copy() for name in names}


class GraphCache:
    """The captured step loops of one layer, keyed by whatever fixes their shapes."""

    def __init__(self) -> None:
        self._graphs: dict[Hashable, StepGraph] = {}

    def __len__(self) -> int:
        return len(self._graphs)

    def clear(self) -> None:
        """Drop every graph and its buffers (e.g. to free device memory)."""
        self._graphs.clear()

    def run(
        self,
        key: Hashable,
        allocate: Callable[[], Buffers],
        body: Callable[[Buffers], None],
        inputs: Mapping[str, Any],
        outputs: tuple[str, ...],
    ) -> Buffers:
        """Run the step loop ``body`` on static buffers, through its graph once captured.

        Parameters
        ----------
        key : identifies the loop and every size it depends on.
        allocate : makes the static buffers (called once per key).
        body : launches the step loop on the buffers; must not allocate or synchronise.
        inputs : arrays copied into the buffers of the same names before the loop.
        outputs : names of the buffers returned, as fresh copies, after it.
        """
        import cupy

        entry = self._graphs.get(key)
        if entry is None:
            entry = StepGraph(allocate(), None)
            entry.load(inputs)
            body(entry.buffers)
            entry.graph = _capture(body, entry.buffers)
            self._graphs[key] = entry
        else:
            entry.load(inputs)
            entry.graph.launch(stream=cupy.cuda.get_current_stream())
        return entry.outputs(outputs)


def _capture(body: Callable[[Buffers], None], buffers: Buffers) -> Any:
    """Record ``body`` on a side stream (capture is not allowed on the legacy default
    stream) that first waits for the current stream's work."""
    import cupy

    current = cupy.cuda.get_current_stream()
    stream = cupy.cuda.Stream(non_blocking=True)
    stream.wait_event(current.record())
    with stream:
        stream.begin_capture()
        try:
            body(buffers)
        finally:
            graph = stream.end_capture()
    current.wait_event(stream.record())
    return graph
