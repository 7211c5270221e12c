// gru.cu: the per-time-step pointwise kernels of a GRU layer-direction.
//
// Forward (gru_forward_pointwise), for step t, gate blocks in PyTorch order r, z, n:
//     r  = sigmoid(Xp_r + Hp_r + bh_r)      Xp[t] = x_t W_ih^T + b_ih
//     z  = sigmoid(Xp_z + Hp_z + bh_z)      Hp    = h_{t-1} W_hh^T (no bias)
//     hn = Hp_n + bh_n                      bh    = b_hh (zeros without bias)
//     n  = tanh(Xp_n + r * hn),             h' = n + z * (h_{t-1} - n)
//     valid (t < lengths[b]):  h_t = h', y_t = h';   past the end: h_t = h_{t-1}, y_t = 0
//   Saved for backward: the post-activation gates (r, z, n) and hn.
//
// Backward (gru_backward_pointwise), step t in reverse, dh = gradient w.r.t. h_t:
//     valid:  dh' = dh + dy_t
//             dn = dh' (1-z)(1-n^2)   dz = dh' (h_{t-1} - n) z(1-z)   dr = dn hn r(1-r)
//             dXp_t = (dr, dz, dn)    dHp_t = (dr, dz, dn * r)        dh <- dh' * z
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
// Launch: one thread per (b, j), e = b * H + j < B * H; 1-D blocks (256 threads), 1-D grid.
#include "common.cuh"

using namespace cuda_rnn;

template <typename T>
__global__ void gru_forward_pointwise(const acc_t<T>* __restrict__ xp,
                                      const acc_t<T>* __restrict__ hp,
                                      const acc_t<T>* __restrict__ bh, T* __restrict__ h,
                                      T* __restrict__ y, T* __restrict__ gates,
                                      T* __restrict__ hn, const int* __restrict__ lengths,
                                      int t, int B, int H) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 3);
    if (!s.in_range()) return;
    const A r = sigmoid(xp[s.gate(0)] + hp[s.hgate(0)] + bh[s.j]);
    const A z = sigmoid(xp[s.gate(1)] + hp[s.hgate(1)] + bh[H + s.j]);
    const A hn_v = hp[s.hgate(2)] + bh[2 * H + s.j];
    const A nv = tanh_(xp[s.gate(2)] + r * hn_v);
    const A h_prev = load(h, s.here);
    const A h_new = nv + z * (h_prev - nv);
    store(gates, s.gate(0), r);
    store(gates, s.gate(1), z);
    store(gates, s.gate(2), nv);
    store(hn, s.here, hn_v);
    const size_t next = s.here + s.n;
    if (step_valid(lengths, s.b, t)) {
        store(h, next, h_new);
        store(y, s.here, h_new);
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
                                       int t, int B, int H) {
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
    const A r = load(gates, s.gate(0));
    const A z = load(gates, s.gate(1));
    const A nv = load(gates, s.gate(2));
    const A dh_new = dh[s.e] + load(dy, s.here);
    const A dn = dh_new * (A(1) - z) * (A(1) - nv * nv);
    const A dz = dh_new * (load(h, s.here) - nv) * z * (A(1) - z);
    const A dr = dn * load(hn, s.here) * r * (A(1) - r);
    store(dxp, s.gate(0), dr);
    store(dxp, s.gate(1), dz);
    store(dxp, s.gate(2), dn);
    store(dhp, s.gate(0), dr);
    store(dhp, s.gate(1), dz);
    store(dhp, s.gate(2), dn * r);
    dh[s.e] = dh_new * z;
}
