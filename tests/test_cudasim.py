"""The CPU simulator's own checks (tests/cudasim), which make a pass under --cuda-sim mean
something: it refuses what a real GPU would get wrong silently or refuse itself.

Run with ``pytest --cuda-sim -m gpu``; skipped otherwise (a real CuPy does not make these
checks, so they would not hold there).
"""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.simulator]


def test_kernel_argument_of_the_wrong_element_type_is_refused(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.kernels import get_kernel

    kernel = get_kernel("rnn.cu", "rnn_forward_pointwise", "float32")
    B, H = 2, 3
    xp = cupy.asarray(rng.standard_normal((1, B, H)))  # float64 where the kernel takes float*
    hp = cupy.asarray(rng.standard_normal((B, H)), cupy.float32)
    h = cupy.empty((2, B, H), cupy.float32)
    y, act = cupy.empty((1, B, H), cupy.float32), cupy.empty((1, B, H), cupy.float32)
    lengths = cupy.ones(B, cupy.int32)
    args = (xp, hp, h, y, act, lengths, np.int32(0), np.int32(B), np.int32(H), np.int32(0))
    with pytest.raises(TypeError, match=r"argument 0: the kernel takes float\*, got double\*"):
        kernel((1,), (32,), args)
    with pytest.raises(TypeError, match=r"argument 6: the kernel takes int, got long long"):
        kernel((1,), (32,), (xp.astype(cupy.float32), *args[1:6], 0, *args[7:]))


def test_kernel_runs_the_real_source(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.kernels import get_kernel

    kernel = get_kernel("rnn.cu", "rnn_forward_pointwise", "float64")
    B, H = 3, 5
    xp, hp = rng.standard_normal((1, B, H)), rng.standard_normal((B, H))
    h = cupy.asarray(rng.standard_normal((2, B, H)))
    y, act = cupy.empty((1, B, H)), cupy.empty((1, B, H))
    lengths = cupy.asarray([1, 0, 1], cupy.int32)  # row 1 is past its end at t = 0
    kernel((1,), (64,), (cupy.asarray(xp), cupy.asarray(hp), h, y, act, lengths,
                         np.int32(0), np.int32(B), np.int32(H), np.int32(0)))
    want = np.tanh(xp[0] + hp)
    got_h, got_y = h.get(), y.get()
    np.testing.assert_allclose(got_h[1][[0, 2]], want[[0, 2]], rtol=1e-12)
    np.testing.assert_array_equal(got_h[1][1], got_h[0][1])
    np.testing.assert_array_equal(got_y[0][1], np.zeros(H))


def test_gemm_operand_outside_its_allocation_fails(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.cuda.blas import GemmPlan
    from cuda_rnn.cuda.errors import KernelLaunchError

    a = cupy.asarray(rng.standard_normal((4, 3)), cupy.float32)
    b = cupy.asarray(rng.standard_normal((3, 2)), cupy.float32)
    c = cupy.empty((4, 2), cupy.float32)
    plan = GemmPlan(a, b, c, what="test product")
    plan(a.data.ptr, b.data.ptr, c.data.ptr)
    np.testing.assert_allclose(c.get(), a.get() @ b.get(), rtol=1e-6)
    short = cupy.empty((2, 2), cupy.float32)  # half of what op(A) reads
    with pytest.raises(KernelLaunchError, match="cublasGemmEx failed .* test product"):
        plan(short.data.ptr, b.data.ptr, c.data.ptr)


def test_graph_capture_refuses_an_allocation_in_the_step_loop() -> None:
    import cupy

    from cuda_rnn.cuda.graph import GraphCache

    def allocate() -> dict:
        return {"a": cupy.zeros(4, cupy.float32)}

    def body(buffers: dict) -> None:
        cupy.multiply(buffers["a"], 2.0, out=cupy.empty(4, cupy.float32))

    with pytest.raises(RuntimeError, match="a device allocation during graph capture"):
        GraphCache().run("key", allocate, body, {}, ("a",))


def test_numpy_operands_are_refused_as_cupy_refuses_them(rng: np.random.Generator) -> None:
    import cupy

    device = cupy.asarray(rng.standard_normal(3))
    with pytest.raises(TypeError, match="Unsupported type"):
        device + rng.standard_normal(3)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(device)
