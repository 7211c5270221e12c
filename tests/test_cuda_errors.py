"""GPU failures become errors that name what was allocated or launched, with the shapes."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_out_of_memory_names_the_buffer() -> None:
    from cuda_rnn.cuda.errors import DeviceMemoryError
    from cuda_rnn.cuda.workspace import empty

    with pytest.raises(DeviceMemoryError, match=r"test buffer: shape \(1048576, 1048576\)"):
        empty((1 << 20, 1 << 20), np.float32, "test buffer")


def test_forward_out_of_memory_names_the_call(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.cuda import lstm
    from cuda_rnn.cuda.errors import DeviceMemoryError
    from cuda_helpers import to_device

    # The (T, B, 4H) float32 input projection alone would need 256 GiB.
    T, B, I, H = 1 << 16, 1 << 12, 1, 64
    x = cupy.broadcast_to(cupy.asarray(rng.standard_normal((1, 1, 1)), cupy.float32), (T, B, I))
    h0 = to_device(rng.standard_normal((B, H)), "float32")[0]
    w_ih = to_device(rng.standard_normal((4 * H, I)), "float32")[0]
    w_hh = to_device(rng.standard_normal((4 * H, H)), "float32")[0]
    with pytest.raises(DeviceMemoryError, match=rf"T={T}, B={B}, I={I}, H={H}"):
        lstm.lstm_forward(x, h0, h0, w_ih, w_hh, None, None)


def test_bad_launch_names_the_kernel(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.cuda.errors import KernelLaunchError
    from cuda_rnn.cuda.launch import launch
    from cuda_rnn.cuda.loader import get_kernel

    kernel = get_kernel("rnn.cu", "rnn_backward_pointwise", "float32")
    a = cupy.asarray(rng.standard_normal((1, 2, 3)), cupy.float32)
    lengths = cupy.ones(2, cupy.int32)
    args = (a, a, a[0], a, lengths, np.int32(0), np.int32(2), np.int32(3), np.int32(0))
    with pytest.raises(KernelLaunchError, match=r"my kernel \(B=2, H=3\).*block \(4096,\)"):
        launch(kernel, (1,), (4096,), args, "my kernel (B=2, H=3)")


def test_every_kernel_compiles_for_this_gpu() -> None:
    from cuda_rnn.cuda import loader

    for filename, entry in loader.KERNELS.items():
        for kernel in entry.kernels + entry.plain:
            for variant in entry.variants_of(kernel):
                for dtype in entry.dtypes:
                    assert loader.get_kernel(filename, kernel, dtype, variant) is not None
