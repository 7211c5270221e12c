// cuda_sim.h: just enough of CUDA C++ for the kernels of kernels_cu/ to compile with the host
// C++ compiler and run on the CPU (tests/cudasim, the CPU device simulator).
//
// A launch of an ordinary module runs every (block, thread) of the grid one after another on
// the calling thread, so its threads cannot wait for each other. A module built with
// enable_cooperative_groups, or whose source calls __syncthreads, runs every thread as a fiber
// instead (cuda_sim_fibers.h), with
// __syncthreads, dynamic shared memory, grid sync and the tensor-core instructions of the
// persistent kernels. Inline PTX has no meaning here and fails the compile.
#pragma once

#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct cuda_sim_uint3 {
    unsigned x, y, z;
};
inline cuda_sim_uint3 threadIdx, blockIdx, blockDim, gridDim;

// Storage of IEEE binary16 and bfloat16, converted with round to nearest even.
struct __half {
    std::uint16_t bits;
};
struct __nv_bfloat16 {
    std::uint16_t bits;
};

inline float __half2float(__half h) {
    _Float16 v;
    std::memcpy(&v, &h.bits, 2);
    return static_cast<float>(v);
}
inline __half __float2half_rn(float f) {
    const _Float16 v = static_cast<_Float16>(f);
    __half h;
    std::memcpy(&h.bits, &v, 2);
    return h;
}
inline float __bfloat162float(__nv_bfloat16 b) {
    const std::uint32_t bits = static_cast<std::uint32_t>(b.bits) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    std::uint32_t bits;
    std::memcpy(&bits, &f, 4);
    __nv_bfloat16 b;
    if (isnan(f)) {
        b.bits = 0x7FC0;
    } else {
        b.bits = static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }
    return b;
}

#include "cuda_sim_fibers.h"

namespace cuda_sim {

// Type codes the Python side compares with each argument's dtype before a launch.
template <typename T> constexpr int type_code() { return 0; }
template <> constexpr int type_code<float>() { return 1; }
template <> constexpr int type_code<double>() { return 2; }
template <> constexpr int type_code<__half>() { return 3; }
template <> constexpr int type_code<__nv_bfloat16>() { return 4; }
template <> constexpr int type_code<int>() { return 5; }
template <> constexpr int type_code<long long>() { return 6; }
template <> constexpr int type_code<long>() { return 6; }

// Per argument: type code of the value (of the pointee for pointers), plus 100 for pointers.
template <typename A> constexpr int arg_code() {
    using V = std::remove_cv_t<A>;
    if constexpr (std::is_pointer_v<V>) {
        return 100 + type_code<std::remove_cv_t<std::remove_pointer_t<V>>>();
    } else {
        return type_code<V>();
    }
}

template <typename... Args, std::size_t... I>
void call(void (*kernel)(Args...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_cv_t<Args>*>(params[I])...);
}

// Runs the grid thread after thread; returns 0, or 1 with the message in last_error. The
// caller has already checked the arguments against signature() below.
template <typename... Args>
int launch(void (*kernel)(Args...), const unsigned* grid, const unsigned* block, void** params) {
    last_error.clear();
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    for (unsigned bz = 0; bz < grid[2]; ++bz)
        for (unsigned by = 0; by < grid[1]; ++by)
            for (unsigned bx = 0; bx < grid[0]; ++bx)
                for (unsigned tz = 0; tz < block[2]; ++tz)
                    for (unsigned ty = 0; ty < block[1]; ++ty)
                        for (unsigned tx = 0; tx < block[0]; ++tx) {
                            blockIdx = {bx, by, bz};
                            threadIdx = {tx, ty, tz};
                            call(kernel, params, std::index_sequence_for<Args...>{});
                        }
    return last_error.empty() ? 0 : 1;
}

// Runs the grid with a fiber per thread (a module built with enable_cooperative_groups, whose
// every launch CuPy makes cooperative, or one whose threads meet at __syncthreads);
// shared_memory is the module's extern __shared__ array.
template <typename... Args>
int launch_cooperative(void (*kernel)(Args...), const unsigned* grid, const unsigned* block,
                       void** params, std::size_t shared_bytes, unsigned char* shared_memory) {
    last_error.clear();
    gridDim = {grid[0], grid[1], grid[2]};
    blockDim = {block[0], block[1], block[2]};
    auto body = [&] { call(kernel, params, std::index_sequence_for<Args...>{}); };
    return run_fibers(body, grid, block, shared_bytes, shared_memory);
}

// The codes of a kernel's parameters, which the Python side checks each launch against.
template <typename... Args> int signature(void (*)(Args...), int* codes, int capacity) {
    constexpr int expected[] = {arg_code<Args>()..., 0};
    const int n = static_cast<int>(sizeof...(Args));
    for (int i = 0; i < n && i < capacity; ++i) codes[i] = expected[i];
    return n;
}

}  // namespace cuda_sim
