"""Errors of the CUDA path that say what was being allocated or launched, with the shapes."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


class CudaRnnError(RuntimeError):
    """Base of the errors raised by the CUDA path."""


class DeviceMemoryError(CudaRnnError):
    """The GPU ran out of memory while allocating a named buffer."""


class KernelLaunchError(CudaRnnError):
    """A kernel or cuBLAS call failed to launch or run."""


@contextlib.contextmanager
def device_errors(what: str) -> Iterator[None]:
    """Re-raise CuPy's out-of-memory, driver, runtime and cuBLAS errors naming ``what``.

    ``what`` should give the operation and its shapes, e.g.
    ``"lstm_forward (T=100, B=32, I=64, H=256, float32)"``.
    """
    import cupy
    from cupy_backends.cuda.libs import cublas

    try:
        yield
    except DeviceMemoryError as exc:
        # workspace.empty already named the buffer; add the call and its shapes.
        raise DeviceMemoryError(f"{exc}, in {what}") from exc
    except cupy.cuda.memory.OutOfMemoryError as exc:
        raise DeviceMemoryError(f"out of GPU memory in {what}: {exc}") from exc
    except (
        cupy.cuda.driver.CUDADriverError,
        cupy.cuda.runtime.CUDARuntimeError,
        cublas.CUBLASError,
    ) as exc:
        raise KernelLaunchError(f"CUDA failure in {what}: {exc}") from exc
