// lstm_persistent.cuh: LSTM forward and backward over a whole sequence, one cooperative
// launch per layer-direction (kernels lstm_forward_persistent<T> and
// lstm_backward_persistent<T>, T = float or __nv_bfloat16), compiled as a cooperative module
// of its own (cuda_rnn/cuda/loader.py). The loop is persistent.cuh's; this file is the LSTM's
// policy for it, with the per-unit math of lstm_cell.cuh, the same as the pointwise kernels
// of lstm.cu.
//
// Equations (gates in PyTorch order i, f, g, o; xp already holds x W_ih^T + b_ih + b_hh):
//   a_t = xp_t + h_{t-1} W_hh^T
//   i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
//   c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)
// Step t of sequence b is real while t < lengths[b]; past the end the state is carried
// (h_t = h_{t-1}, c_t = c_{t-1}) and y_t = 0. Backward, per step in reverse time, with m = 1
// on real steps and 0 past the end:
//   dh = (dh_t + dy_t) * m      dc = dc_t * m + dh * o * (1 - tanh(c_t)^2)
//   di = dc * g * i (1 - i)     df = dc * c_{t-1} * f (1 - f)
//   dg = dc * i * (1 - g^2)     do = dh * tanh(c_t) * o (1 - o)
//   dc_{t-1} = dc * f + dc_t * (1 - m)
//   dh_{t-1} = dG_t W_hh + dh_t * (1 - m)
// dW_ih, dW_hh, dx and the bias gradients are left to large GEMMs after the loop (the host
// does them from dgates, x and hseq), where cuBLAS runs them at full width.
//
// Memory layout (all row-major, time-major, contiguous; T the storage type; B batch, H hidden):
//   forward:  xp (steps, B, 4H) in acc_t<T> (float), input projection with both biases;
//             w_hh (4H, H); lengths (B,) int32;
//             hseq (steps+1, B, H), hseq[0] = h_0 on entry, the kernel writes hseq[1..];
//             cseq (steps+1, B, H), cseq[0] = c_0 on entry, the kernel writes cseq[1..];
//             gates (steps, B, 4H) out, post-activation i, f, g, o;
//             tanh_c (steps, B, H) out, tanh of the unmasked new cell state;
//             y (steps, B, H) out, zero past each length
//   backward: w_hh, lengths, gates, cseq, tanh_c as above (read); dy (steps, B, H);
//             dh_n, dc_n (B, H) in acc_t<T>; dgates (steps, B, 4H) out; dh0, dc0 (B, H) out
//             in acc_t<T> (they may alias dh_n, dc_n: each block reads its units' entries
//             before the loop and writes them after)
// Saved for backward: hseq, cseq, gates, tanh_c: the same as the NumPy reference's cache.
//
// Launch shape: persistent.cuh's, a cooperative launch of ceil(H / hs) blocks of
// persistent::kThreads threads. Forward keeps the block's 4 * hs rows of W_hh in shared
// memory and c of its units on chip; backward keeps its hs columns and dh, dc on chip.
#pragma once

#include "lstm_cell.cuh"
#include "persistent.cuh"

namespace cuda_rnn::persistent {

template <typename T> struct LstmPolicy {
    static constexpr int kGates = 4;

    struct Forward : ForwardArrays<T> {
        T* cseq;
        T* gates;
        T* tanh_c;
    };
    struct Backward : BackwardArrays<T> {
        const T* __restrict__ gates;
        const T* __restrict__ cseq;
        const T* __restrict__ tanh_c;
        const acc_t<T>* dc_n;
        T* dgates;
        acc_t<T>* dc0;
    };

    static __device__ __forceinline__ const T* forward_state(const Forward& io) {
        return io.cseq;
    }

    // state: c_{t-1} of the unit in, c_t out. Past the end h_t is h_{t-1}, read back from hseq.
    static __device__ __forceinline__ ForwardOut forward_step(const Forward& io,
                                                              const UnitElement& s, size_t next,
                                                              const float (&rec)[4], bool real,
                                                              float& state) {
        float a[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) a[q] = rec[q] + load(io.xp, s.gate(q));
        const float c_prev = state;
        const LstmStep<float> cell = lstm_cell_forward(a, c_prev);
#pragma unroll
        for (int q = 0; q < 4; ++q) store(io.gates, s.gate(q), cell.gate[q]);
        store(io.tanh_c, s.e, cell.tanh_c);
        const float c_keep = real ? cell.c : c_prev;
        state = c_keep;
        store(io.cseq, next, c_keep);
        return ForwardOut{cell.h, real ? cell.h : load_l2(io.hseq + s.e)};
    }

    // own[s.local]: dL/dc_t in, dL/dc_{t-1} out. Every term of dL/dh_{t-1} passes through W_hh.
    static __device__ __forceinline__ float backward_step(const Backward& io,
                                                          const UnitElement& s, float dh,
                                                          bool real, float* own) {
        const float dc_in = own[s.local];
        float gate[4], dgate[4];
#pragma unroll
        for (int q = 0; q < 4; ++q) gate[q] = load(io.gates, s.gate(q));
        const float dc = lstm_cell_backward(gate, load(io.tanh_c, s.e), load(io.cseq, s.e), dh,
                                            real ? dc_in : 0.0f, dgate);
#pragma unroll
        for (int q = 0; q < 4; ++q) store(io.dgates, s.gate(q), dgate[q]);
        own[s.local] = dc * gate[1] + (real ? 0.0f : dc_in);
        return 0.0f;
    }

    static __device__ __forceinline__ const T* recurrent_gradient(const Backward& io) {
        return io.dgates;
    }

    static __device__ __forceinline__ void begin_backward(const Backward& io, int batch,
                                                          int hidden, Slice slice, float* own) {
        load_state(io.dc_n, batch, hidden, slice, own);
    }

    static __device__ __forceinline__ void end_backward(const Backward& io, int batch,
                                                        int hidden, Slice slice, float* own) {
        store_state(own, batch, hidden, slice, io.dc0);
    }
};

}  // namespace cuda_rnn::persistent

// Kernels at global scope, like the pointwise kernels of lstm.cu / gru.cu, so their name
// expressions carry no namespace.

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
lstm_forward_persistent(const cuda_rnn::acc_t<T>* __restrict__ xp, const T* __restrict__ w_hh,
                        const int* __restrict__ lengths, T* hseq, T* cseq, T* gates, T* tanh_c,
                        T* y, CUDA_RNN_PERSISTENT_LAUNCH_PARAMS) {
    cuda_rnn::persistent::forward_loop<cuda_rnn::persistent::LstmPolicy<T>>(
        {{xp, w_hh, lengths, hseq, y}, cseq, gates, tanh_c}, CUDA_RNN_PERSISTENT_LAUNCH);
}

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
lstm_backward_persistent(const T* __restrict__ w_hh, const int* __restrict__ lengths,
                         const T* __restrict__ gates, const T* __restrict__ cseq,
                         const T* __restrict__ tanh_c, const T* __restrict__ dy,
                         const cuda_rnn::acc_t<T>* dh_n, const cuda_rnn::acc_t<T>* dc_n,
                         T* dgates, cuda_rnn::acc_t<T>* dh0, cuda_rnn::acc_t<T>* dc0,
                         CUDA_RNN_PERSISTENT_LAUNCH_PARAMS) {
    cuda_rnn::persistent::backward_loop<cuda_rnn::persistent::LstmPolicy<T>>(
        {{w_hh, lengths, dy, dh_n, dh0}, gates, cseq, tanh_c, dc_n, dgates, dc0},
        CUDA_RNN_PERSISTENT_LAUNCH);
}
