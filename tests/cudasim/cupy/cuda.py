"""cupy.cuda of the simulator: one device, streams with graph capture, the error types.

Work runs synchronously on the host, so streams only matter for capture: while the current
stream is capturing, :func:`enqueue` records operations into its graph instead of running
them, and :func:`forbid_during_capture` rejects anything a captured step loop must not do.
"""
from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

#: What the simulated device reports (an H100 SXM's counts, so the host code's fit rules
#: see the sizes they were written for).
DEVICE_NAME = b"cuda_rnn CPU simulator"
ATTRIBUTES = {"MultiProcessorCount": 132, "MaxSharedMemoryPerBlockOptin": 227 * 1024,
              "MaxThreadsPerBlock": 1024, "WarpSize": 32}


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError."""


class CUDADriverError(RuntimeError):
    """cupy.cuda.driver.CUDADriverError."""


class OutOfMemoryError(MemoryError):
    """cupy.cuda.memory.OutOfMemoryError, with CuPy's (size, total, limit) arguments."""

    def __init__(self, size: int, total: int, limit: int = 0) -> None:
        super().__init__(f"Out of memory allocating {size:,} bytes "
                         f"(allocated so far: {total:,} bytes, limit set to: {limit:,} bytes).")


class CompileException(Exception):
    """cupy.cuda.compiler.CompileException: the message carries the compiler log."""


class Function:
    """cupy.cuda.function.Function: what ``RawKernel.kernel`` is; ``ptr`` is the handle the
    occupancy query takes."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr


class Event:
    """A recorded point on a stream (work here is synchronous, so always complete)."""

    done = True

    def record(self, stream: Stream | None = None) -> None:
        """Nothing to mark: work already ran."""

    def synchronize(self) -> None:
        forbid_during_capture("Event.synchronize")


class Graph:
    """A captured sequence of operations, replayed in order by :meth:`launch`."""

    def __init__(self, operations: list[Callable[[], None]]) -> None:
        self._operations = operations

    def launch(self, stream: Stream | None = None) -> None:
        forbid_during_capture("Graph.launch inside another capture")
        for operation in self._operations:
            operation()

    def upload(self, stream: Stream | None = None) -> None:
        """Nothing to upload on the host."""


class Stream:
    """cupy.cuda.Stream: current while used as a context manager; can capture a graph."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False,
                 priority: int | None = None) -> None:
        self._null = null
        self._capture: list[Callable[[], None]] | None = None
        self.ptr = 0 if null else id(self)
        _streams[self.ptr] = self

    def __enter__(self) -> Stream:
        _stack.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _stack.pop()

    def use(self) -> Stream:
        _stack[:] = [self]
        return self

    def record(self, event: Event | None = None) -> Event:
        return Event() if event is None else event

    def wait_event(self, event: Event) -> None:
        """Work is synchronous: nothing to wait for."""

    def synchronize(self) -> None:
        if self.is_capturing():
            raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: synchronize during "
                                   "stream capture")

    def is_capturing(self) -> bool:
        return self._capture is not None

    def begin_capture(self, mode: Any = None) -> None:
        if self._null:
            raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported: the legacy default "
                                   "stream cannot capture")
        if self._capture is not None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is already capturing")
        self._capture = []

    def end_capture(self) -> Graph:
        if self._capture is None:
            raise CUDARuntimeError("cudaErrorIllegalState: the stream is not capturing")
        graph, self._capture = Graph(self._capture), None
        return graph


    @classmethod
    def from_external(cls, obj: Any) -> Stream:
        """A Stream on a foreign stream object through the CUDA stream protocol
        (``obj.__cuda_stream__()`` returns ``(0, pointer)``), with CuPy 14's checks."""
        try:
            version, ptr = obj.__cuda_stream__()
        except AttributeError as exc:
            raise TypeError(f"Object of type {type(obj).__name__} does not implement the CUDA "
                            f"stream protocol (__cuda_stream__ method)") from exc
        except (TypeError, ValueError) as exc:
            raise TypeError("__cuda_stream__() must return a 2-tuple of "
                            "(version, stream_ptr)") from exc
        if not isinstance(version, int) or not isinstance(ptr, int):
            raise TypeError(f"__cuda_stream__() must return (int, int), got "
                            f"({type(version).__name__}, {type(ptr).__name__})")
        if version != 0:
            raise TypeError(f"__cuda_stream__() returned unsupported version {version}, only "
                            f"version 0 is supported")
        stream = cls()
        stream.ptr = ptr
        stream._foreign_stream_ref = obj
        _streams[ptr] = stream
        return stream


class ExternalStream(Stream):
    """A stream made elsewhere (e.g. torch's); only its pointer is kept. Deprecated in
    CuPy 14, which warns as here."""

    def __init__(self, ptr: int, device_id: int = -1) -> None:
        warnings.warn("ExternalStream is deprecated. Use Stream.from_external() instead to "
                      "interoperate with external streams that implement the CUDA stream "
                      "protocol.", DeprecationWarning, stacklevel=2)
        super().__init__()
        self.ptr = ptr
        _streams[ptr] = self


_streams: weakref.WeakValueDictionary[int, Stream] = weakref.WeakValueDictionary()
Stream.null = Stream(null=True)
_stack: list[Stream] = []


def get_current_stream(device_id: int = -1) -> Stream:
    return _stack[-1] if _stack else Stream.null


def current_capture() -> list[Callable[[], None]] | None:
    """The operation list of the capturing current stream, or None when not capturing."""
    return get_current_stream()._capture


def enqueue(operation: Callable[[], None], stream_ptr: int | None = None) -> None:
    """Run ``operation`` now, or record it when its stream (the current one unless
    ``stream_ptr`` names another) is capturing."""
    stream = get_current_stream() if stream_ptr is None else stream_by_ptr(stream_ptr)
    if stream._capture is None:
        operation()
    else:
        stream._capture.append(operation)


def stream_by_ptr(ptr: int) -> Stream:
    """The live stream with this handle (0 is the legacy default stream)."""
    if ptr not in _streams:
        raise CUDARuntimeError(f"cudaErrorInvalidResourceHandle: no stream {ptr:#x}")
    return _streams[ptr]


def forbid_during_capture(what: str) -> None:
    """Raise when the current stream is capturing: ``what`` would not be part of the graph
    (or would allocate or synchronise inside a loop that must not)."""
    if current_capture() is not None:
        raise CUDARuntimeError(f"cudasim: {what} during graph capture; a captured step loop "
                               f"may only launch kernels and cuBLAS calls on existing buffers")


class Device:
    """The one simulated device."""

    def __init__(self, device: int | None = None) -> None:
        if device not in (None, 0):
            raise CUDARuntimeError(f"cudaErrorInvalidDevice: device {device} (the simulator "
                                   f"has device 0 only)")
        self.id = 0
        self.attributes = dict(ATTRIBUTES)
        self.compute_capability = "90"

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def use(self) -> None:
        """There is one device."""

    def synchronize(self) -> None:
        forbid_during_capture("Device.synchronize")


def _get_device_properties(device_id: int) -> dict[str, Any]:
    Device(device_id)
    return {"name": DEVICE_NAME, "multiProcessorCount": ATTRIBUTES["MultiProcessorCount"],
            "major": 9, "minor": 0}


def _mem_get_info() -> tuple[int, int]:
    from . import DEVICE_MEMORY_BYTES, device_memory_in_use

    return max(DEVICE_MEMORY_BYTES - device_memory_in_use(), 0), DEVICE_MEMORY_BYTES


def _occupancy(func: int, block_size: int, dynamic_smem_size: int) -> int:
    from ._raw import occupancy

    return occupancy(func, block_size, dynamic_smem_size)


runtime = SimpleNamespace(
    CUDARuntimeError=CUDARuntimeError,
    getDeviceCount=lambda: 1,
    getDevice=lambda: 0,
    getDeviceProperties=_get_device_properties,
    deviceSynchronize=lambda: forbid_during_capture("deviceSynchronize"),
    memGetInfo=_mem_get_info,
)
driver = SimpleNamespace(CUDADriverError=CUDADriverError,
                         occupancyMaxActiveBlocksPerMultiprocessor=_occupancy)
memory = SimpleNamespace(OutOfMemoryError=OutOfMemoryError)
compiler = SimpleNamespace(CompileException=CompileException)
function = SimpleNamespace(Function=Function)
