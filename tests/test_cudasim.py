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

    from cuda_rnn.cuda.loader import get_kernel

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

    from cuda_rnn.cuda.loader import get_kernel

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


# A cooperative kernel for the checks below: every block sums its threads' values through
# shared memory, waits at a grid sync, then reads the next block's sum. `mode` breaks one rule.
COOPERATIVE_SOURCE = r"""
#include <cooperative_groups.h>

template <typename T>
__global__ void neighbour_sum(const T* x, T* sums, T* out, int mode) {
    extern __shared__ __align__(16) unsigned char smem[];
    T* partial = reinterpret_cast<T*>(smem);
    const int t = threadIdx.x;
    partial[t] = x[blockIdx.x * blockDim.x + t];
    if (mode == 1 && t == 0) return;            // a thread skips the barrier
    __syncthreads();
    if (t == 0) {
        T s = 0;
        for (int i = 0; i < blockDim.x; ++i) s += partial[i];
        sums[blockIdx.x] = s;
    }
    if (mode == 2) partial[blockDim.x] = 1;     // one element past the dynamic size
    if (mode == 3 && blockIdx.x == 0) return;   // a block skips the grid sync
    cooperative_groups::this_grid().sync();
    if (t == 0) out[blockIdx.x] = sums[(blockIdx.x + 1) % gridDim.x];
}
"""


def neighbour_sum_kernel():
    import cupy

    module = cupy.RawModule(code=COOPERATIVE_SOURCE, name_expressions=("neighbour_sum<float>",),
                            enable_cooperative_groups=True)
    return module.get_function("neighbour_sum<float>")


def neighbour_sum_args(rng: np.random.Generator, blocks: int, threads: int,
                       mode: int) -> tuple:
    import cupy

    x = cupy.asarray(rng.standard_normal(blocks * threads), cupy.float32)
    sums = cupy.empty(blocks, cupy.float32)
    out = cupy.empty(blocks, cupy.float32)
    return x, sums, out, np.int32(mode)


def test_cooperative_launch_waits_at_barriers_and_grid_sync(rng: np.random.Generator) -> None:
    kernel = neighbour_sum_kernel()
    blocks, threads = 5, 64
    x, sums, out, mode = neighbour_sum_args(rng, blocks, threads, 0)
    kernel((blocks,), (threads,), (x, sums, out, mode), shared_mem=threads * 4)
    want = x.get().reshape(blocks, threads).sum(axis=1)
    np.testing.assert_allclose(out.get(), np.roll(want, -1), rtol=1e-5)


@pytest.mark.parametrize("mode, message", [
    (1, r"block 0 cannot go on: 63 threads at __syncthreads; 1 threads returned"),
    (2, r"block \d wrote past its 256 bytes of dynamic shared memory"),
    (3, r"grid.sync: 256 threads wait at it but 64 have returned"),
])
def test_cooperative_launch_refuses_a_broken_rule(rng: np.random.Generator, mode: int,
                                                  message: str) -> None:
    import cupy

    kernel = neighbour_sum_kernel()
    args = neighbour_sum_args(rng, 5, 64, mode)
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match=message):
        kernel((5,), (64,), args, shared_mem=256)


def test_cooperative_launch_needs_every_block_resident(rng: np.random.Generator) -> None:
    import cupy

    kernel = neighbour_sum_kernel()
    kernel.max_dynamic_shared_size_bytes = 200 * 1024
    args = neighbour_sum_args(rng, 133, 64, 0)  # one block per SM fits, 132 SMs
    with pytest.raises(cupy.cuda.driver.CUDADriverError,
                       match="COOPERATIVE_LAUNCH_TOO_LARGE.*132 blocks can be resident"):
        kernel((133,), (64,), args, shared_mem=200 * 1024)
    assert cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(
        kernel.kernel.ptr, 64, 200 * 1024) == 1


def test_shared_memory_above_48_kib_needs_the_opt_in(rng: np.random.Generator) -> None:
    import cupy

    kernel = neighbour_sum_kernel()
    args = neighbour_sum_args(rng, 2, 64, 0)
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match="set max_dynamic_shared"):
        kernel((2,), (64,), args, shared_mem=64 * 1024)
    kernel.max_dynamic_shared_size_bytes = 64 * 1024
    kernel((2,), (64,), args, shared_mem=64 * 1024)
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match="the device allows"):
        kernel.max_dynamic_shared_size_bytes = 228 * 1024


TF32_SOURCE = r"""
#include <cooperative_groups.h>
#include <cstdint>

namespace cuda_rnn { namespace persistent { uint32_t to_tf32(float x); } }

__global__ void round_to_tf32(const float* x, float* out, int n) {
    const int i = threadIdx.x;
    if (i < n) out[i] = __uint_as_float(cuda_rnn::persistent::to_tf32(x[i]));
}
"""


def test_tf32_conversion_rounds_ties_away_from_zero() -> None:
    import cupy

    module = cupy.RawModule(code=TF32_SOURCE, name_expressions=("round_to_tf32",),
                            enable_cooperative_groups=True)
    kernel = module.get_function("round_to_tf32")
    ulp = 2.0 ** -10  # TF32 keeps 10 mantissa bits
    x = np.array([1 + ulp / 2, -(1 + ulp / 2), 1 + ulp / 4, 1 + 3 * ulp / 4, 3.0, np.inf],
                 np.float32)
    want = np.array([1 + ulp, -(1 + ulp), 1.0, 1 + ulp, 3.0, np.inf], np.float32)
    out = cupy.empty(x.size, cupy.float32)
    kernel((1,), (32,), (cupy.asarray(x), out, np.int32(x.size)))
    np.testing.assert_array_equal(out.get(), want)
