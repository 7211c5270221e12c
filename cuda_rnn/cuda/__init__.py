"""The cells on the GPU: the same functions as :mod:`cuda_rnn.reference`, on CuPy arrays.

:class:`~cuda_rnn.cuda.backend.CudaBackend` is what the layers reach: it runs any cell's
:class:`~cuda_rnn.cellspec.CellSpec` through :mod:`cuda_rnn.cuda.sequence` (the step loops,
the graph capture and the GEMMs around them, written once) and owns the algorithm choice, the
graph cache, the device limits and the 16-bit storage arithmetic. Each module (rnn, lstm,
gru) exposes ``<cell>_forward`` and ``<cell>_backward`` with the signatures of its NumPy twin
(plus keywords ``name``, ``algo`` and ``graphs``). This package imports without CuPy; the
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
