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
    # None and 0: no zoneout mask (a null pointer) and no zoneout probability
    args = (xp, hp, h, y, act, lengths, None, np.int32(0), np.int32(B), np.int32(H),
            np.int32(0), np.float32(0))
    with pytest.raises(TypeError, match=r"argument 0: the kernel takes float\*, got double\*"):
        kernel((1,), (32,), args)
    with pytest.raises(TypeError, match=r"argument 7: the kernel takes int, got long long"):
        kernel((1,), (32,), (xp.astype(cupy.float32), *args[1:7], 0, *args[8:]))


def test_kernel_runs_the_real_source(rng: np.random.Generator) -> None:
    import cupy

    from cuda_rnn.cuda.loader import get_kernel

    kernel = get_kernel("rnn.cu", "rnn_forward_pointwise", "float64")
    B, H = 3, 5
    xp, hp = rng.standard_normal((1, B, H)), rng.standard_normal((B, H))
    h = cupy.asarray(rng.standard_normal((2, B, H)))
    y, act = cupy.empty((1, B, H)), cupy.empty((1, B, H))
    lengths = cupy.asarray([1, 0, 1], cupy.int32)  # row 1 is past its end at t = 0
    kernel((1,), (64,), (cupy.asarray(xp), cupy.asarray(hp), h, y, act, lengths, None,
                         np.int32(0), np.int32(B), np.int32(H), np.int32(0), np.float64(0)))
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
    with pytest.raises(KernelLaunchError, match="not inside any live device allocation.*"
                                                "test product"):
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


# An ordinary (not cooperative) module whose threads meet at __syncthreads: each block sums
# its row into shared memory, then every thread reads the total.
BARRIER_SOURCE = r"""
#include <cuda_fp16.h>

__global__ void row_total(const float* x, float* out, int skip) {
    extern __shared__ __align__(16) unsigned char smem[];
    float* partial = reinterpret_cast<float*>(smem);
    const int t = threadIdx.x;
    partial[t] = x[blockIdx.x * blockDim.x + t];
    if (skip && t == 0) return;  // a thread skips the barrier
    __syncthreads();
    float s = 0;
    for (int i = 0; i < blockDim.x; ++i) s += partial[i];
    out[blockIdx.x * blockDim.x + t] = s;
}
"""


def test_an_ordinary_module_with_barriers_runs_its_threads_together(
        rng: np.random.Generator) -> None:
    import cupy

    module = cupy.RawModule(code=BARRIER_SOURCE, name_expressions=("row_total",))
    kernel = module.get_function("row_total")
    blocks, threads = 3, 32
    x = cupy.asarray(rng.standard_normal(blocks * threads), cupy.float32)
    out = cupy.empty(blocks * threads, cupy.float32)
    kernel((blocks,), (threads,), (x, out, np.int32(0)), shared_mem=threads * 4)
    want = np.repeat(x.get().reshape(blocks, threads).sum(axis=1), threads)
    np.testing.assert_allclose(out.get(), want, rtol=1e-5)  # every thread saw every write
    with pytest.raises(cupy.cuda.driver.CUDADriverError, match="__syncthreads"):
        kernel((blocks,), (threads,), (x, out, np.int32(1)), shared_mem=threads * 4)
        cupy.cuda.Device().synchronize()


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


def test_cooperative_grid_too_large_is_cut_down_with_cupys_warning(
        rng: np.random.Generator) -> None:
    import cupy

    kernel = neighbour_sum_kernel()
    kernel.max_dynamic_shared_size_bytes = 200 * 1024
    args = neighbour_sum_args(rng, 133, 64, 0)  # one block per SM fits, 132 SMs
    x, sums, out, _ = args
    out[...] = cupy.full(133, np.nan, cupy.float32)
    with pytest.warns(UserWarning, match="grid size will be reduced from 133 to 132"):
        kernel((133,), (64,), args, shared_mem=200 * 1024)
    got = out.get()
    want = x.get().reshape(133, 64)[:132].sum(axis=1)
    np.testing.assert_allclose(got[:132], np.roll(want, -1), rtol=1e-5)
    assert np.isnan(got[132])  # the block cut off never ran
    with pytest.raises(ValueError, match=r"grid size \(67 \* 2 \* 1\) exceeds the limit"):
        kernel((67, 2), (64,), args, shared_mem=200 * 1024)
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


def _simulated(name: str) -> object:
    """The simulator's object for an entry of tests/cupy_api.py (on an instance for
    instance attributes, as some are only set by the constructor)."""
    import cupy
    import cupy_backends
    import nvmath

    from cupy_api import API, resolve

    modules = {"cupy": cupy, "cupy_backends": cupy_backends, "nvmath": nvmath}
    if not API[name].instance:
        return resolve(name, modules)
    owner, attribute = name.rsplit(".", 1)
    instances = {
        "cupy.RawKernel": lambda: cupy.RawModule(code=TF32_SOURCE, name_expressions=(
            "round_to_tf32",), enable_cooperative_groups=True).get_function("round_to_tf32"),
        "cupy.cuda.Stream": cupy.cuda.Stream,
        "cupy.cuda.Device": cupy.cuda.Device,
        "cupy.cuda.function.Function": lambda: _simulated("cupy.RawKernel.kernel"),
        "cupy.ndarray": lambda: cupy.zeros(1),
        "cupy.cuda.MemoryPool": cupy.get_default_memory_pool,
    }
    holder = instances[owner]() if owner in instances else resolve(owner, modules)
    return getattr(holder, attribute)


def test_simulator_takes_each_name_as_the_library_uses_it() -> None:
    import inspect

    from cupy_api import API, check_call

    for name, use in API.items():
        target = _simulated(name)
        if use.positional is None:
            continue
        signature = inspect.signature(target)
        check_call(signature, use, name)
        for parameter, kind in use.types.items():
            assert signature.parameters[parameter].annotation == kind, (name, parameter)


def test_rawmodule_and_launches_take_cupy_14_arguments(rng: np.random.Generator) -> None:
    import cupy

    with pytest.raises(TypeError):
        cupy.RawModule(TF32_SOURCE)
    with pytest.raises(TypeError, match="Argument 'options' has incorrect type"):
        cupy.RawModule(code=TF32_SOURCE, options=["--std=c++17"])
    kernel = neighbour_sum_kernel()
    args = neighbour_sum_args(rng, 2, 64, 0)
    with pytest.raises(TypeError, match="Argument 'grid' has incorrect type"):
        kernel(2, (64,), args, shared_mem=256)
    with pytest.raises(TypeError, match="Argument 'block' has incorrect type"):
        kernel((2,), [64], args, shared_mem=256)
    stream = cupy.cuda.Stream(non_blocking=True)
    stream.begin_capture()
    kernel((2,), (64,), args, shared_mem=256, stream=stream)  # recorded, not run
    graph = stream.end_capture()
    x, _, out, _ = args
    out[...] = cupy.full(2, np.nan, cupy.float32)
    graph.launch()
    want = x.get().reshape(2, 64).sum(axis=1)
    np.testing.assert_allclose(out.get(), np.roll(want, -1), rtol=1e-5)


def test_streams_come_from_the_cuda_stream_protocol() -> None:
    import cupy

    class Foreign:
        def __cuda_stream__(self) -> tuple[int, int]:
            return (0, 0xBEEF)

    stream = cupy.cuda.Stream.from_external(Foreign())
    assert stream.ptr == 0xBEEF
    assert cupy.cuda.stream_by_ptr(0xBEEF) is stream
    with pytest.raises(TypeError, match="CUDA stream protocol"):
        cupy.cuda.Stream.from_external(object())
    with pytest.warns(DeprecationWarning, match="ExternalStream is deprecated"):
        cupy.cuda.ExternalStream(0xF00D)


def test_cublas_set_stream_drops_the_workspace(rng: np.random.Generator) -> None:
    import cupy
    from nvmath.bindings import cublas

    a = cupy.asarray(rng.standard_normal((3, 3)), cupy.float32)
    c = cupy.empty((3, 3), cupy.float32)
    workspace = cupy.empty(1 << 20, cupy.uint8)
    one, zero = np.array(1.0, np.float32), np.array(0.0, np.float32)
    handle = cublas.create()
    stream = cupy.cuda.Stream(non_blocking=True)

    def gemm() -> None:
        cublas.gemm_ex(handle, 0, 0, 3, 3, 3, one.ctypes.data, a.data.ptr, 0, 3, a.data.ptr,
                       0, 3, zero.ctypes.data, c.data.ptr, 0, 3, 68, -1)

    cublas.set_stream(handle, stream.ptr)
    cublas.set_workspace(handle, workspace.data.ptr, workspace.nbytes)
    cublas.set_stream(handle, stream.ptr)  # resets the workspace, as cuBLAS documents
    stream.begin_capture()
    with pytest.raises(cublas.cuBLASError, match="without its own workspace"):
        gemm()
    cublas.set_workspace(handle, workspace.data.ptr, workspace.nbytes)
    gemm()
    graph = stream.end_capture()
    graph.launch()
    np.testing.assert_allclose(c.get(), a.get() @ a.get(), rtol=1e-6)  # row-major view
    cublas.destroy(handle)


def test_cublas_wrappers_load_lazily_as_in_cupy_14() -> None:
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent
    script = ("import sys; sys.path.insert(0, {!r}); sys.path.insert(0, {!r})\n"
              "try:\n    import cupy_backends.cuda.libs.cublas\n"
              "except ImportError as exc:\n    print('direct:', exc)\n"
              "from cupy_backends.cuda.libs import cublas\n"
              "print('lazy:', cublas.CUBLASError.__name__)\n").format(
                  str(root / "cudasim"), str(root.parent))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    assert "direct: libcublas.so.13: cannot open shared object file" in result.stdout
    assert "lazy: CUBLASError" in result.stdout
