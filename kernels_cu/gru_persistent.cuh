// gru_persistent.cuh: GRU forward and backward over a whole sequence, one cooperative launch
// per layer-direction (kernels gru_forward_persistent<T> and gru_backward_persistent<T>,
// T = float or __nv_bfloat16), compiled as a cooperative module of its own
// (cuda_rnn/cuda/persistent.py). The per-unit math is gru_cell.cuh's, the same as the
// pointwise kernels of gru.cu.
//
// Equations (gates in PyTorch order r, z, n; xp holds x W_ih^T + b_ih, b_hh enters hp):
//   hp_t = h_{t-1} W_hh^T + b_hh
//   r = sigmoid(xp_r + hp_r)   z = sigmoid(xp_z + hp_z)   n = tanh(xp_n + r * hp_n)
//   h_t = (1 - z) * n + z * h_{t-1}
// With lengths, step t of sequence b is real while t < lengths[b]; past the end the state is
// carried and y_t = 0. Backward, per step in reverse time, with dh = (dh_t + dy_t) * m:
//   dn = dh (1 - z)(1 - n^2)   dz = dh (h_{t-1} - n) z (1 - z)   dr = dn hp_n r (1 - r)
//   dxp_t = [dr, dz, dn]       dhp_t = [dr, dz, dn * r]   (r scales only the recurrent n term)
//   dh_{t-1} = dhp_t W_hh + dh * z + dh_t * (1 - m)
// dW_ih = dxp^T x, dW_hh = dhp^T h_{t-1}, dx = dxp W_ih and the bias sums are left to large
// GEMMs after the loop, done by the host.
//
// Memory layout (all row-major, time-major, contiguous; T the storage type; B batch, H hidden):
//   xp      (steps, B, 3H)   input projection with b_ih, in acc_t<T> (float)
//   w_hh    (3H, H)          PyTorch's weight_hh;   b_hh (3H,) in acc_t<T>, or nullptr
//   lengths (B,) int32       or nullptr for full-length sequences
//   hseq    (steps+1, B, H)  hseq[0] = h_0 on entry; the kernel writes hseq[1..]
//   gates   (steps, B, 3H)   r, z, n after their nonlinearities  (saved for backward)
//   hn      (steps, B, H)    hp_n = W_hn h_{t-1} + b_hn           (saved for backward)
//   y       (steps, B, H)    outputs, zero past each length; nullptr without lengths, where
//                            y is hseq[1..] itself
//   backward: dy (steps, B, H) or nullptr; dh_n (B, H) in acc_t<T>; dxp, dhp (steps, B, 3H)
//             out; dh0 (B, H) out in acc_t<T> (it may alias dh_n).
// Saved for backward: hseq, gates, hn: the same as the NumPy reference's cache.
//
// Launch shape: a cooperative launch of ceil(H / hs) blocks of persistent::kThreads threads,
// with the dynamic shared memory and offsets that cuda_rnn/cuda/persistent.py computes; every
// block must be resident at once. Forward keeps the block's 3 * hs rows of W_hh in shared
// memory; backward keeps its hs columns.
#pragma once

#include "gru_cell.cuh"
#include "persistent.cuh"

// Kernels at global scope, like the pointwise kernels of lstm.cu / gru.cu, so their name
// expressions carry no namespace.

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
gru_forward_persistent(const cuda_rnn::acc_t<T>* __restrict__ xp,
                       const T* __restrict__ w_hh, const cuda_rnn::acc_t<T>* __restrict__ b_hh,
                       const int* __restrict__ lengths, T* hseq, T* gates, T* hn, T* y,
                       int steps, int batch, int hidden, int hs, int ldw, int chunk, int lds,
                       int ldr, int ksplit, int stage_offset, int red_offset, int state_offset,
                       int allow_tf32) {
    namespace p = cuda_rnn::persistent;
    using namespace cuda_rnn;
    extern __shared__ __align__(16) unsigned char smem[];
    const p::SharedRegions<T> sh = p::carve<T>(smem, stage_offset, red_offset, state_offset);
    const p::Slice slice = p::block_slice(hs, hidden);
    const int rows = 3 * hs;
    const int mpad = (rows + 15) / 16 * 16;
    const size_t bh = static_cast<size_t>(batch) * hidden;
    float* h_state = sh.state;  // hs x B, h_{t-1} of the block's units in float
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();

    p::load_weight_rows(w_hh, 3, hidden, hs, slice, sh.resident, ldw);
    p::load_state(hseq, batch, hidden, slice, h_state);
    __syncthreads();

    for (int t = 0; t < steps; ++t) {
        p::recurrent_product(sh.resident, ldw, rows, hseq + t * bh, hidden, batch, hidden,
                             sh.stage, lds, chunk, sh.red, ldr, ksplit, true, !allow_tf32);
        for (int i = threadIdx.x; i < slice.units * batch; i += p::kThreads) {
            const p::UnitElement s = p::unit_element(i, slice, t, batch, hidden, 3);
            float a_in[3], a_rec[3];
#pragma unroll
            for (int q = 0; q < 3; ++q) {
                a_in[q] = load(xp, s.gate(q));
                a_rec[q] = p::reduced(sh.red, ldr, mpad, ksplit, q * hs + s.j, s.b) +
                           (b_hh != nullptr ? load(b_hh, q * hidden + s.u) : 0.0f);
            }
            const float h_prev = h_state[s.local];
            const GruStep<float> cell = gru_cell_forward(a_in, a_rec, h_prev);
#pragma unroll
            for (int q = 0; q < 3; ++q) store(gates, s.gate(q), cell.gate[q]);
            store(hn, s.e, a_rec[2]);
            const bool real = lengths == nullptr || t < lengths[s.b];
            const float h_keep = real ? cell.h : h_prev;
            h_state[s.local] = h_keep;
            store(hseq, s.e + bh, h_keep);
            if (y != nullptr) store(y, s.e, real ? cell.h : 0.0f);
        }
        grid.sync();
    }
}

template <typename T>
__global__ void __launch_bounds__(cuda_rnn::persistent::kThreads, 1)
gru_backward_persistent(const T* __restrict__ w_hh, const int* __restrict__ lengths,
                        const T* __restrict__ hseq, const T* __restrict__ gates,
                        const T* __restrict__ hn, const T* __restrict__ dy,
                        const cuda_rnn::acc_t<T>* dh_n, T* dxp, T* dhp,
                        cuda_rnn::acc_t<T>* dh0, int steps,
                        int batch, int hidden, int hs, int ldw, int chunk, int lds, int ldr,
                        int ksplit, int stage_offset, int red_offset, int state_offset,
                        int allow_tf32) {
    namespace p = cuda_rnn::persistent;
    using namespace cuda_rnn;
    extern __shared__ __align__(16) unsigned char smem[];
    const p::SharedRegions<T> sh = p::carve<T>(smem, stage_offset, red_offset, state_offset);
    const p::Slice slice = p::block_slice(hs, hidden);
    const int mpad = (batch + 15) / 16 * 16;
    const int per_state = hs * batch;
    float* dh_state = sh.state;               // dL/dh_t of the block's units
    float* direct = sh.state + per_state;     // dh * z + dh_t (1 - m): terms outside W_hh
    const size_t bh = static_cast<size_t>(batch) * hidden;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();

    p::load_weight_columns(w_hh, 3, hidden, hs, slice, sh.resident, ldw);
    p::load_state(dh_n, batch, hidden, slice, dh_state);
    __syncthreads();

    for (int t = steps - 1; t >= 0; --t) {
        T* dhp_t = dhp + t * bh * 3;
        for (int i = threadIdx.x; i < slice.units * batch; i += p::kThreads) {
            const p::UnitElement s = p::unit_element(i, slice, t, batch, hidden, 3);
            const bool real = lengths == nullptr || t < lengths[s.b];
            const float dh_in = dh_state[s.local];
            const float dy_v = dy != nullptr ? load(dy, s.e) : 0.0f;
            float gate[3], d_in[3], d_rec[3];
#pragma unroll
            for (int q = 0; q < 3; ++q) gate[q] = load(gates, s.gate(q));
            const float dh_z = gru_cell_backward(gate, load(hn, s.e), load(hseq, s.e),
                                                 real ? dh_in + dy_v : 0.0f, d_in, d_rec);
#pragma unroll
            for (int q = 0; q < 3; ++q) {
                store(dxp, s.gate(q), d_in[q]);
                store(dhp, s.gate(q), d_rec[q]);
            }
            direct[s.local] = dh_z + (real ? 0.0f : dh_in);
        }
        grid.sync();
        p::recurrent_product(sh.resident, ldw, hs, dhp_t, 3 * hidden, batch, 3 * hidden,
                             sh.stage, lds, chunk, sh.red, ldr, ksplit, false, !allow_tf32);
        p::finish_state_gradient(sh.red, ldr, mpad, ksplit, slice, batch, direct, dh_state);
    }
    p::store_state(dh_state, batch, hidden, slice, dh0);
}

