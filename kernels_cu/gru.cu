// gru.cu: the per-time-step pointwise kernels of a GRU layer-direction.
//
// Forward (gru_forward_pointwise), for step t, gate blocks in PyTorch order r, z, n:
//     r  = sigmoid(Xp_r + Hp_r + bh_r)      Xp[t] = x_t W_ih^T + b_ih
//     z  = sigmoid(Xp_z + Hp_z + bh_z)      Hp    = h_{t-1} W_hh^T (no bias)
//     hn = Hp_n + bh_n                      bh    = b_hh (zeros without bias)
//     n  = tanh(Xp_n + r * hn),             h' = n + z * (h_{t-1} - n)
//     valid (t < lengths[b]):  h_t = h', y_t = h_t;   past the end: h_t = h_{t-1}, y_t = 0
//     with zoneout (mask d, 1 keeps the previous value): h_t = h_{t-1} + (1 - d)(h' - h_{t-1})
//   Saved for backward: the post-activation gates (r, z, n) and hn.
//
// Backward (gru_backward_pointwise), step t in reverse, dh = gradient w.r.t. h_t:
//     valid:  dh' = dh + dy_t
//             dn = dh' (1-z)(1-n^2)   dz = dh' (h_{t-1} - n) z(1-z)   dr = dn hn r(1-r)
//             dXp_t = (dr, dz, dn)    dHp_t = (dr, dz, dn * r)        dh <- dh' * z
//             with zoneout: dh' = (1 - d)(dh + dy_t) above, and dh <- dh' * z + d (dh + dy_t)
//     past the end: dXp_t = dHp_t = 0 and dh passes through unchanged.
//   Since r scales only the recurrent part of n, the gradients w.r.t. the input and the
//   recurrent projections differ in the n block; the caller adds dHp_t W_hh into dh with a
//   GEMM (beta = 1), giving dh_{t-1}.
//
// Memory layout (row-major, C-contiguous; T steps, B batch rows, H hidden units):
//   xp     acc_t[T][B][3H]   input projection plus b_ih, all steps
//   hp     acc_t[B][3H]      this step's recurrent projection;  bh acc_t[3H]
//   h      T[T+1][B][H]      states; step t reads index t and writes index t+1
//   y      T[T][B][H];  gates T[T][B][3H];  hn T[T][B][H]
//   dy     T[T][B][H];  dh acc_t[B][H] (read and overwritten);  dxp, dhp T[T][B][3H]
//   lengths int[B], every value in [1, T]
//   zh     T[T][B][H]        zoneout mask of h, or null (then ph, the probability, eval
//                            mode; 0: none)
// Launch: one thread per (b, j), e = b * H + j < B * H; 1-D blocks (256 threads), 1-D grid.
// The per-unit math is in gru_cell.cuh, shared with the persistent kernels.
#include "common.cuh"
#include "gru_cell.cuh"

using namespace cuda_rnn;

template <typename T>
__global__ void gru_forward_pointwise(const acc_t<T>* __restrict__ xp,
                                      const acc_t<T>* __restrict__ hp,
                                      const acc_t<T>* __restrict__ bh, T* __restrict__ h,
                                      T* __restrict__ y, T* __restrict__ gates,
                                      T* __restrict__ hn, const int* __restrict__ lengths,
                                      const T* __restrict__ zh, int t, int B, int H,
                                      acc_t<T> ph) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 3);
    if (!s.in_range()) return;
    A a_in[3], a_rec[3];
#pragma unroll
    for (int k = 0; k < 3; ++k) {
        a_in[k] = xp[s.gate(k)];
        a_rec[k] = hp[s.hgate(k)] + bh[k * H + s.j];
    }
    const GruStep<A> cell = gru_cell_forward(a_in, a_rec, load(h, s.here));
#pragma unroll
    for (int k = 0; k < 3; ++k) store(gates, s.gate(k), cell.gate[k]);
    store(hn, s.here, a_rec[2]);
    const size_t next = s.here + s.n;
    if (step_valid(lengths, s.b, t)) {
        const A h_t = Zoneout<T>{zh, ph}.mix(load(h, s.here), cell.h, s.here);
        store(h, next, h_t);
        store(y, s.here, h_t);
    } else {
        h[next] = h[s.here];
        store(y, s.here, A(0));
    }
}

template <typename T>
__global__ void gru_backward_pointwise(const T* __restrict__ gates, const T* __restrict__ hn,
                                       const T* __restrict__ h, const T* __restrict__ dy,
                                       acc_t<T>* __restrict__ dh, T* __restrict__ dxp,
                                       T* __restrict__ dhp, const int* __restrict__ lengths,
                                       const T* __restrict__ zh, int t, int B, int H,
                                      acc_t<T> ph) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 3);
    if (!s.in_range()) return;
    if (!step_valid(lengths, s.b, t)) {
        for (int k = 0; k < 3; ++k) {
            store(dxp, s.gate(k), A(0));
            store(dhp, s.gate(k), A(0));
        }
        return;
    }
    A gate[3], d_in[3], d_rec[3];
#pragma unroll
    for (int k = 0; k < 3; ++k) gate[k] = load(gates, s.gate(k));
    const Zoneout<T> zoneout{zh, ph};
    const A total = dh[s.e] + load(dy, s.here);
    dh[s.e] = gru_cell_backward(gate, load(hn, s.here), load(h, s.here),
                                zoneout.share(total, s.here), d_in, d_rec) +
              zoneout.keep(total, s.here);
#pragma unroll
    for (int k = 0; k < 3; ++k) {
        store(dxp, s.gate(k), d_in[k]);
        store(dhp, s.gate(k), d_rec[k]);
    }
}
