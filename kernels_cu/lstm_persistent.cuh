// lstm_persistent.cuh: LSTM forward and backward over a whole sequence, one cooperative
// launch per layer-direction (kernels lstm_forward_persistent<T> and
// lstm_backward_persistent<T>, T = float or __nv_bfloat16), compiled as a cooperative module
// of its own (cuda_rnn/cuda/persistent.py). The per-unit math is lstm_cell.cuh's, the same
// as the pointwise kernels of lstm.cu.
//
// Equations (gates in PyTorch order i, f, g, o; xp already holds x W_ih^T + b_ih + b_hh):
//   a_t = xp_t + h_{t-1} W_hh^T
//   i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
//   c_t = f * c_{t-1} + i * g           h_t = o * tanh(c_t)
// With lengths, step t of sequence b is real while t < lengths[b]; past the end the state is
// carried (h_t = h_{t-1}, c_t = c_{t-1}) and y_t = 0. Backward, per step in reverse time:
//   dh = (dh_t + dy_t) * m      dc = dc_t * m + dh * o * (1 - tanh(c_t)^2)
//   di = dc * g * i (1 - i)     df = dc * c_{t-1} * f (1 - f)
//   dg = dc * i * (1 - g^2)     do = dh * tanh(c_t) * o (1 - o)
//   dc_{t-1} = dc * f + dc_t * (1 - m)
//   dh_{t-1} = dG_t W_hh + dh_t * (1 - m)
// dW_ih, dW_hh, dx and the bias gradients are left to large GEMMs after the loop (the host
// does them from dgates, x and hseq), where cuBLAS runs them at full width.
//
// Memory layout (all row-major, time-major, contiguous; T the storage type; B batch, H hidden):
//   xp      (steps, B, 4H)   input projection with both biases, in acc_t<T> (float)
//   w_hh    (4H, H)          PyTorch's weight_hh
//   lengths (B,) int32       or nullptr for full-length sequences
//   hseq    (steps+1, B, H)  hseq[0] = h_0 on entry; the kernel writes hseq[1..]
//   cseq    (steps+1, B, H)  cseq[0] = c_0 on entry; the kernel writes cseq[1..]
//   gates   (steps, B, 4H)   post-activation i, f, g, o          (saved for backward)
//   tanh_c  (steps, B, H)    tanh of the unmasked new cell state (saved for backward)
//   y       (steps, B, H)    outputs, zero past each length; nullptr without lengths, where
//                            y is hseq[1..] itself
//   backward: dy (steps, B, H) or nullptr; dh_n, dc_n (B, H) in acc_t<T>; dgates
//             (steps, B, 4H) out; dh0, dc0 (B, H) out in acc_t<T> (they may alias dh_n, dc_n:
//             each block reads its units' entries before the loop and writes them after).
// Saved for backward: hseq, cseq, gates, tanh_c: the same as the NumPy reference's cache.
//
// Launch shape: a cooperative launch of ceil(H / hs) blocks of persistent::kThreads threads,
// with the dynamic shared memory and offsets that cuda_rnn/cuda/persistent.py computes; every
// block must be resident at once (the host checks the occupancy first). Forward keeps the
// block's 4 * hs rows of W_hh in shared memory; backward keeps its hs columns.
#pragma once

#include "lstm_cell.cuh"
#include "persistent.cuh"

// Kernels at global scope, like the pointwise kernels of lstm.cu / gru.cu, so their name
// expressions carry no namespace.

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
lstm_forward_persistent(const cuda_rnn::acc_t<T>* __restrict__ xp, const T* __restrict__ w_hh,
                        const int* __restrict__ lengths, T* hseq, T* cseq, T* gates, T* tanh_c,
                        T* y, int steps, int batch, int hidden, int hs, int ldw, int chunk,
                        int lds, int ldr, int ksplit, int stage_offset, int red_offset,
                        int state_offset, int allow_tf32) {
    namespace p = cuda_rnn::persistent;
    using namespace cuda_rnn;
    extern __shared__ __align__(16) unsigned char smem[];
    const p::SharedRegions<T> sh = p::carve<T>(smem, stage_offset, red_offset, state_offset);
    const p::Slice slice = p::block_slice(hs, hidden);
    const int rows = 4 * hs;
    const int mpad = (rows + 15) / 16 * 16;
    const size_t bh = static_cast<size_t>(batch) * hidden;
    float* c_state = sh.state;  // hs x B, cell state of the block's units in float
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();

    p::load_weight_rows(w_hh, 4, hidden, hs, slice, sh.resident, ldw);
    p::load_state(cseq, batch, hidden, slice, c_state);
    __syncthreads();

    for (int t = 0; t < steps; ++t) {
        p::recurrent_product(sh.resident, ldw, rows, hseq + t * bh, hidden, batch, hidden,
                             sh.stage, lds, chunk, sh.red, ldr, ksplit, true, !allow_tf32);
        for (int i = threadIdx.x; i < slice.units * batch; i += p::kThreads) {
            const p::UnitElement s = p::unit_element(i, slice, t, batch, hidden, 4);
            float a[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                a[q] = p::reduced(sh.red, ldr, mpad, ksplit, q * hs + s.j, s.b) +
                       load(xp, s.gate(q));
            }
            const float c_prev = c_state[s.local];
            const LstmStep<float> cell = lstm_cell_forward(a, c_prev);
#pragma unroll
            for (int q = 0; q < 4; ++q) store(gates, s.gate(q), cell.gate[q]);
            store(tanh_c, s.e, cell.tanh_c);
            const bool real = lengths == nullptr || t < lengths[s.b];
            const float h_keep = real ? cell.h : p::load_l2(hseq + s.e);
            const float c_keep = real ? cell.c : c_prev;
            c_state[s.local] = c_keep;
            store(hseq, s.e + bh, h_keep);
            store(cseq, s.e + bh, c_keep);
            if (y != nullptr) store(y, s.e, real ? cell.h : 0.0f);
        }
        grid.sync();
    }
}

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
lstm_backward_persistent(const T* __restrict__ w_hh, const int* __restrict__ lengths,
                         const T* __restrict__ gates, const T* __restrict__ cseq,
                         const T* __restrict__ tanh_c, const T* __restrict__ dy,
                         const cuda_rnn::acc_t<T>* dh_n, const cuda_rnn::acc_t<T>* dc_n,
                         T* dgates, cuda_rnn::acc_t<T>* dh0, cuda_rnn::acc_t<T>* dc0,
                         int steps, int batch, int hidden, int hs, int ldw, int chunk, int lds,
                         int ldr, int ksplit, int stage_offset, int red_offset, int state_offset,
                         int allow_tf32) {
    namespace p = cuda_rnn::persistent;
    using namespace cuda_rnn;
    extern __shared__ __align__(16) unsigned char smem[];
    const p::SharedRegions<T> sh = p::carve<T>(smem, stage_offset, red_offset, state_offset);
    const p::Slice slice = p::block_slice(hs, hidden);
    const int mpad = (batch + 15) / 16 * 16;
    const int per_state = hs * batch;
    float* dh_state = sh.state;                // dL/dh_t of the block's units
    float* dc_state = sh.state + per_state;    // dL/dc_t
    float* carried = sh.state + 2 * per_state; // dh_t * (1 - m): passes straight to t - 1
    const size_t bh = static_cast<size_t>(batch) * hidden;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();

    p::load_weight_columns(w_hh, 4, hidden, hs, slice, sh.resident, ldw);
    p::load_state(dh_n, batch, hidden, slice, dh_state);
    p::load_state(dc_n, batch, hidden, slice, dc_state);
    __syncthreads();

    for (int t = steps - 1; t >= 0; --t) {
        T* dg_t = dgates + t * bh * 4;
        for (int i = threadIdx.x; i < slice.units * batch; i += p::kThreads) {
            const p::UnitElement s = p::unit_element(i, slice, t, batch, hidden, 4);
            const bool real = lengths == nullptr || t < lengths[s.b];
            const float dh_in = dh_state[s.local];
            const float dc_in = dc_state[s.local];
            const float dy_v = dy != nullptr ? load(dy, s.e) : 0.0f;
            float gate[4], dgate[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) gate[q] = load(gates, s.gate(q));
            const float dc = lstm_cell_backward(gate, load(tanh_c, s.e), load(cseq, s.e),
                                                real ? dh_in + dy_v : 0.0f,
                                                real ? dc_in : 0.0f, dgate);
#pragma unroll
            for (int q = 0; q < 4; ++q) store(dgates, s.gate(q), dgate[q]);
            dc_state[s.local] = dc * gate[1] + (real ? 0.0f : dc_in);
            carried[s.local] = real ? 0.0f : dh_in;
        }
        grid.sync();
        p::recurrent_product(sh.resident, ldw, hs, dg_t, 4 * hidden, batch, 4 * hidden,
                             sh.stage, lds, chunk, sh.red, ldr, ksplit, false, !allow_tf32);
        p::finish_state_gradient(sh.red, ldr, mpad, ksplit, slice, batch, carried, dh_state);
    }
    p::store_state(dh_state, batch, hidden, slice, dh0);
    p::store_state(dc_state, batch, hidden, slice, dc0);
}

