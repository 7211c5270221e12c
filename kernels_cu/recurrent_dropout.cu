// recurrent_dropout.cu: variational recurrent dropout around the step loops' recurrent GEMM,
// for every cell (one (B, P) mask m for every step of a forward, Gal and Ghahramani 2016).
//
// Forward (recurrent_dropout_forward), before the GEMM Hp = h~ W_hh^T of step t:
//     h~ = h_{t-1} * m
// Backward (recurrent_dropout_backward), after the GEMM dhr = dHp_t W_hh of step t (beta 0):
//     dh += dhr * m      dh already holds what reaches h_{t-1} by other paths (the GRU's
//                        z * dh, a state kept past a sequence's end), which m does not scale
// dW_hh = sum_t dHp_t^T h~_t is formed by the caller after the loop.
//
// Memory layout (row-major, C-contiguous; B batch rows, P units of h):
//   h      T[B][P]         row t of the states
//   mask   T[B][P]         m: 0 or 1 / (1 - p), in the storage type
//   h_masked T[B][P]       h~, the GEMM's input
//   dhr    acc_t[B][P];  dh  acc_t[B][P] (read and updated)
// Launch: one thread per element e < n = B * P; 1-D blocks (256 threads), 1-D grid.
// Nothing is saved for backward beyond the mask, which the caller keeps.
#include "common.cuh"

using namespace cuda_rnn;

template <typename T>
__global__ void recurrent_dropout_forward(const T* __restrict__ h, const T* __restrict__ mask,
                                          T* __restrict__ h_masked, int n) {
    const size_t e = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= static_cast<size_t>(n)) return;
    store(h_masked, e, load(h, e) * load(mask, e));
}

template <typename T>
__global__ void recurrent_dropout_backward(const acc_t<T>* __restrict__ dhr,
                                           const T* __restrict__ mask,
                                           acc_t<T>* __restrict__ dh, int n) {
    const size_t e = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= static_cast<size_t>(n)) return;
    dh[e] += dhr[e] * load(mask, e);
}
