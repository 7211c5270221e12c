// common.cuh: what every cell's kernels share.
//
// - acc_t<T>: the type pointwise math runs in for storage type T: float for __half,
//   __nv_bfloat16 and float; double for double.
// - load / store: storage <-> accumulator conversion (round to nearest even on store).
// - sigmoid / tanh that stay finite and accurate for every finite input.
// - StepElement: the indices of the pointwise launch shape, one thread per (batch row b,
//   hidden unit j), element e = b * H + j, 1-D grid of 1-D blocks.
// - Zoneout: a state update state_t = old + take * (new - old) of a valid step, with
//   take = 1 - d and d the zoneout mask's element (1 keeps the previous value), or the
//   probability p itself without a mask (eval mode); no mask and p = 0 is no zoneout.
//   Forward mixes; backward splits the gradient reaching state_t into the new value's share
//   (take times it) and the old value's (the rest).
//
// No kernels and nothing saved here. Included textually by cuda_rnn/cuda/loader.py (which
// inlines it with #line markers), so the NVRTC log names this file and line on an error.
#pragma once

#include <cuda_fp16.h>
#include <cuda_bf16.h>

namespace cuda_rnn {

template <typename T> struct Accumulator { using type = float; };
template <> struct Accumulator<double> { using type = double; };
template <typename T> using acc_t = typename Accumulator<T>::type;

template <typename T> __device__ __forceinline__ acc_t<T> load(const T* p, size_t i) {
    return p[i];
}
template <> __device__ __forceinline__ float load<__half>(const __half* p, size_t i) {
    return __half2float(p[i]);
}
template <> __device__ __forceinline__ float load<__nv_bfloat16>(const __nv_bfloat16* p,
                                                                 size_t i) {
    return __bfloat162float(p[i]);
}

template <typename T> __device__ __forceinline__ void store(T* p, size_t i, acc_t<T> v) {
    p[i] = v;
}
template <> __device__ __forceinline__ void store<__half>(__half* p, size_t i, float v) {
    p[i] = __float2half_rn(v);
}
template <> __device__ __forceinline__ void store<__nv_bfloat16>(__nv_bfloat16* p, size_t i,
                                                                 float v) {
    p[i] = __float2bfloat16_rn(v);
}

// v as the storage type T holds it (rounded to nearest even), back in the accumulator type.
template <typename T> __device__ __forceinline__ acc_t<T> rounded(acc_t<T> v) {
    T held[1];
    store(held, 0, v);
    return load(held, 0);
}

// exp of a non-positive argument only, so neither branch overflows; e * s = e / (1 + e)
// keeps full relative accuracy for large negative x, where 1 - 1/(1+e) would cancel.
__device__ __forceinline__ float sigmoid(float x) {
    const float e = expf(-fabsf(x));
    const float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}
__device__ __forceinline__ double sigmoid(double x) {
    const double e = exp(-fabs(x));
    const double s = 1.0 / (1.0 + e);
    return x >= 0.0 ? s : e * s;
}

// The CUDA math library's tanh saturates to +-1 without overflow and is accurate near 0
// (a formula through exp(2x) is neither).
__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }

// Thread (b, j) of a pointwise launch at step t, and where it reads and writes in each
// layout, for a cell with `gates` gate blocks of H units (n = B * H):
//   [B][H]            index e = b * H + j
//   [T][B][H]         index here; in a [T+1][B][H] state array, here is row t, here + n row t+1
//   [T][B][gates*H]   gate(k): gate block k of unit j at step t
//   [B][gates*H]      hgate(k): gate block k of unit j (this step's recurrent projection)
struct StepElement {
    size_t e, n, here, row, hrow;
    int b, j, H;
    __device__ __forceinline__ bool in_range() const { return e < n; }
    __device__ __forceinline__ size_t gate(int k) const {
        return row + static_cast<size_t>(k) * H + j;
    }
    __device__ __forceinline__ size_t hgate(int k) const {
        return hrow + static_cast<size_t>(k) * H + j;
    }
};

__device__ __forceinline__ StepElement step_element(int t, int B, int H, int gates) {
    StepElement s;
    s.e = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    s.n = static_cast<size_t>(B) * H;
    s.b = static_cast<int>(s.e / H);
    s.j = static_cast<int>(s.e % H);
    s.H = H;
    s.here = static_cast<size_t>(t) * s.n + s.e;
    s.hrow = static_cast<size_t>(s.b) * gates * H;
    s.row = static_cast<size_t>(t) * s.n * gates + s.hrow;
    return s;
}

// PackedSequence semantics: step t of sequence b is real while t < lengths[b].
__device__ __forceinline__ bool step_valid(const int* lengths, int b, int t) {
    return t < lengths[b];
}

// mask: a [T][B][N] mask in the storage type (0 or 1, training), or null; then p, the
// probability itself (its expectation, eval mode), 0 for no zoneout. i: the element's index
// in the mask ("here" of StepElement).
template <typename T> struct Zoneout {
    const T* mask;
    acc_t<T> p;
    __device__ __forceinline__ bool on() const { return mask != nullptr || p != acc_t<T>(0); }
    __device__ __forceinline__ acc_t<T> take(size_t i) const {
        return acc_t<T>(1) - (mask != nullptr ? load(mask, i) : p);
    }
    __device__ __forceinline__ acc_t<T> mix(acc_t<T> old, acc_t<T> next, size_t i) const {
        return on() ? old + take(i) * (next - old) : next;
    }
    // Of the gradient reaching state_t, the new value's share and the old value's.
    __device__ __forceinline__ acc_t<T> share(acc_t<T> grad, size_t i) const {
        return on() ? grad * take(i) : grad;
    }
    __device__ __forceinline__ acc_t<T> keep(acc_t<T> grad, size_t i) const {
        return on() ? grad * (acc_t<T>(1) - take(i)) : acc_t<T>(0);
    }
};

}  // namespace cuda_rnn
