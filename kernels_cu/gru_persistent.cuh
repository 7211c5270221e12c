// gru_persistent.cuh: GRU forward and backward over a whole sequence, one cooperative launch
// per layer-direction (kernels gru_forward_persistent<T> and gru_backward_persistent<T>,
// T = float or __nv_bfloat16), compiled as a cooperative module of its own
// (cuda_rnn/cuda/loader.py). The loop is persistent.cuh's; this file is the GRU's policy for
// it, with the per-unit math of gru_cell.cuh, the same as the pointwise kernels of gru.cu.
//
// Equations (gates in PyTorch order r, z, n; xp holds x W_ih^T + b_ih, b_hh enters hp):
//   hp_t = h_{t-1} W_hh^T + b_hh
//   r = sigmoid(xp_r + hp_r)   z = sigmoid(xp_z + hp_z)   n = tanh(xp_n + r * hp_n)
//   h_t = (1 - z) * n + z * h_{t-1}
// Step t of sequence b is real while t < lengths[b]; past the end the state is carried and
// y_t = 0. Backward, per step in reverse time, with m = 1 on real steps and 0 past the end
// and dh = (dh_t + dy_t) * m:
//   dn = dh (1 - z)(1 - n^2)   dz = dh (h_{t-1} - n) z (1 - z)   dr = dn hp_n r (1 - r)
//   dxp_t = [dr, dz, dn]       dhp_t = [dr, dz, dn * r]   (r scales only the recurrent n term)
//   dh_{t-1} = dhp_t W_hh + dh * z + dh_t * (1 - m)
// dW_ih = dxp^T x, dW_hh = dhp^T h_{t-1}, dx = dxp W_ih and the bias sums are left to large
// GEMMs after the loop, done by the host.
//
// Memory layout (all row-major, time-major, contiguous; T the storage type; B batch, H hidden):
//   forward:  xp (steps, B, 3H) in acc_t<T> (float), input projection with b_ih;
//             w_hh (3H, H); b_hh (3H,) in acc_t<T> (zeros without bias); lengths (B,) int32;
//             hseq (steps+1, B, H), hseq[0] = h_0 on entry, the kernel writes hseq[1..];
//             gates (steps, B, 3H) out, r, z, n after their nonlinearities;
//             hn (steps, B, H) out, hp_n = W_hn h_{t-1} + b_hn;
//             y (steps, B, H) out, zero past each length
//   backward: w_hh, lengths, hseq, gates, hn as above (read); dy (steps, B, H);
//             dh_n (B, H) in acc_t<T>; dxp, dhp (steps, B, 3H) out; dh0 (B, H) out in
//             acc_t<T> (it may alias dh_n)
// Saved for backward: hseq, gates, hn: the same as the NumPy reference's cache.
//
// Launch shape: persistent.cuh's, a cooperative launch of ceil(H / hs) blocks of
// persistent::kThreads threads. Forward keeps the block's 3 * hs rows of W_hh in shared
// memory and h of its units on chip; backward keeps its hs columns and dh on chip.
#pragma once

#include "gru_cell.cuh"
#include "persistent.cuh"

namespace cuda_rnn::persistent {

template <typename T> struct GruPolicy {
    static constexpr int kGates = 3;

    struct Forward : ForwardArrays<T> {
        const acc_t<T>* __restrict__ b_hh;
        T* gates;
        T* hn;
    };
    struct Backward : BackwardArrays<T> {
        const T* __restrict__ hseq;
        const T* __restrict__ gates;
        const T* __restrict__ hn;
        T* dxp;
        T* dhp;
    };

    static __device__ __forceinline__ const T* forward_state(const Forward& io) {
        return io.hseq;
    }

    // state: h_{t-1} of the unit in float, h_t out.
    static __device__ __forceinline__ ForwardOut forward_step(const Forward& io,
                                                              const UnitElement& s, size_t,
                                                              const float (&rec)[3], bool real,
                                                              float& state) {
        float a_in[3], a_rec[3];
#pragma unroll
        for (int q = 0; q < 3; ++q) {
            a_in[q] = load(io.xp, s.gate(q));
            a_rec[q] = rec[q] + load(io.b_hh, q * s.hidden + s.u);
        }
        const float h_prev = state;
        const GruStep<float> cell = gru_cell_forward(a_in, a_rec, h_prev);
#pragma unroll
        for (int q = 0; q < 3; ++q) store(io.gates, s.gate(q), cell.gate[q]);
        store(io.hn, s.e, a_rec[2]);
        const float h_keep = real ? cell.h : h_prev;
        state = h_keep;
        return ForwardOut{cell.h, h_keep};
    }

    // The GRU keeps no backward state of its own; dh * z reaches h_{t-1} outside W_hh.
    static __device__ __forceinline__ float backward_step(const Backward& io,
                                                          const UnitElement& s, float dh, bool,
                                                          float*) {
        float gate[3], d_in[3], d_rec[3];
#pragma unroll
        for (int q = 0; q < 3; ++q) gate[q] = load(io.gates, s.gate(q));
        const float dh_z = gru_cell_backward(gate, load(io.hn, s.e), load(io.hseq, s.e), dh,
                                             d_in, d_rec);
#pragma unroll
        for (int q = 0; q < 3; ++q) {
            store(io.dxp, s.gate(q), d_in[q]);
            store(io.dhp, s.gate(q), d_rec[q]);
        }
        return dh_z;
    }

    static __device__ __forceinline__ const T* recurrent_gradient(const Backward& io) {
        return io.dhp;
    }

    static __device__ __forceinline__ void begin_backward(const Backward&, int, int, Slice,
                                                          float*) {}
    static __device__ __forceinline__ void end_backward(const Backward&, int, int, Slice,
                                                        float*) {}
};

}  // namespace cuda_rnn::persistent

// Kernels at global scope, like the pointwise kernels of lstm.cu / gru.cu, so their name
// expressions carry no namespace.

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
gru_forward_persistent(const cuda_rnn::acc_t<T>* __restrict__ xp,
                       const T* __restrict__ w_hh, const cuda_rnn::acc_t<T>* __restrict__ b_hh,
                       const int* __restrict__ lengths, T* hseq, T* gates, T* hn, T* y,
                       CUDA_RNN_PERSISTENT_LAUNCH_PARAMS) {
    cuda_rnn::persistent::forward_loop<cuda_rnn::persistent::GruPolicy<T>>(
        {{xp, w_hh, lengths, hseq, y}, b_hh, gates, hn}, CUDA_RNN_PERSISTENT_LAUNCH);
}

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
gru_backward_persistent(const T* __restrict__ w_hh, const int* __restrict__ lengths,
                        const T* __restrict__ hseq, const T* __restrict__ gates,
                        const T* __restrict__ hn, const T* __restrict__ dy,
                        const cuda_rnn::acc_t<T>* dh_n, T* dxp, T* dhp,
                        cuda_rnn::acc_t<T>* dh0, CUDA_RNN_PERSISTENT_LAUNCH_PARAMS) {
    cuda_rnn::persistent::backward_loop<cuda_rnn::persistent::GruPolicy<T>>(
        {{w_hh, lengths, dy, dh_n, dh0}, hseq, gates, hn, dxp, dhp}, CUDA_RNN_PERSISTENT_LAUNCH);
}
