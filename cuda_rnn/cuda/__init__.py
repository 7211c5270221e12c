"""The cells on the GPU: the same functions as :mod:`cuda_rnn.reference`, on CuPy arrays.

Each module (rnn, lstm, gru) exposes ``<cell>_forward`` and ``<cell>_backward`` with the
signatures of its NumPy twin (plus keywords ``name``, ``algo`` and ``graphs``) and describes
its kernels (kernels_cu/<cell>.cu and the persistent headers) in a
:class:`~cuda_rnn.cuda.cellspec.CellSpec`: the buffers they use and the order of their
arguments. :mod:`cuda_rnn.cuda.sequence` runs any spec, so the step loops, the graph capture
and the GEMMs around them are written once. This package imports without CuPy; the
functions import it when called.

Storage dtypes (see :mod:`cuda_rnn.cuda.dtypes`): float16, bfloat16, float32, float64.
"""
from .dtypes import DTYPE_NAMES, acc_dtype, cast, dtype_name, storage_dtype, to_float32
from .errors import CudaRnnError, DeviceMemoryError, KernelLaunchError

__all__ = [
    "DTYPE_NAMES",
    "CudaRnnError",
    "DeviceMemoryError",
    "KernelLaunchError",
    "acc_dtype",
    "cast",
    "dtype_name",
    "storage_dtype",
    "to_float32",
]
