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
    const size_t e = element_index();
    const size_t n = static_cast<size_t>(B) * H;
    if (e >= n) return;
    const int b = static_cast<int>(e / H);
    const int j = static_cast<int>(e % H);
    const size_t G = 3 * static_cast<size_t>(H);
    const size_t row = static_cast<size_t>(t) * n * 3 + b * G;
    const size_t hrow = b * G;
    const A r = sigmoid(xp[row + j] + hp[hrow + j] + bh[j]);
    const A z = sigmoid(xp[row + H + j] + hp[hrow + H + j] + bh[H + j]);
    const A hn_v = hp[hrow + 2 * H + j] + bh[2 * H + j];
    const A nv = tanh_(xp[row + 2 * H + j] + r * hn_v);
    const size_t prev = static_cast<size_t>(t) * n + e;
    const size_t next = prev + n;
    const A h_prev = load(h, prev);
    const A h_new = nv + z * (h_prev - nv);
    store(gates, row + j, r);
    store(gates, row + H + j, z);
    store(gates, row + 2 * H + j, nv);
    store(hn, prev, hn_v);
    if (step_valid(lengths, b, t)) {
        store(h, next, h_new);
        store(y, prev, h_new);
    } else {
        h[next] = h[prev];
        store(y, prev, A(0));
    }
}

template <typename T>
__global__ void gru_backward_pointwise(const T* __restrict__ gates, const T* __restrict__ hn,
                                       const T* __restrict__ h, const T* __restrict__ dy,
                                       acc_t<T>* __restrict__ dh, T* __restrict__ dxp,
                                       T* __restrict__ dhp, const int* __restrict__ lengths,
                                       int t, int B, int H) {
    using A = acc_t<T>;
    const size_t e = element_index();
    const size_t n = static_cast<size_t>(B) * H;
    if (e >= n) return;
    const int b = static_cast<int>(e / H);
    const int j = static_cast<int>(e % H);
    const size_t G = 3 * static_cast<size_t>(H);
    const size_t row = static_cast<size_t>(t) * n * 3 + b * G;
    const size_t here = static_cast<size_t>(t) * n + e;
    if (!step_valid(lengths, b, t)) {
        for (int k = 0; k < 3; ++k) {
            store(dxp, row + k * H + j, A(0));
            store(dhp, row + k * H + j, A(0));
        }
        return;
    }
    const A r = load(gates, row + j);
    const A z = load(gates, row + H + j);
    const A nv = load(gates, row + 2 * H + j);
    const A dh_new = dh[e] + load(dy, here);
    const A dn = dh_new * (A(1) - z) * (A(1) - nv * nv);
    const A dz = dh_new * (load(h, here) - nv) * z * (A(1) - z);
    const A dr = dn * load(hn, here) * r * (A(1) - r);
    store(dxp, row + j, dr);
    store(dxp, row + H + j, dz);
    store(dxp, row + 2 * H + j, dn);
    store(dhp, row + j, dr);
    store(dhp, row + H + j, dz);
    store(dhp, row + 2 * H + j, dn * r);
    dh[e] = dh_new * z;
}
