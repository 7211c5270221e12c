// lstm.cu: the per-time-step pointwise kernels of an LSTM layer-direction.
//
// Forward (lstm_forward_pointwise), for step t, with gate blocks in PyTorch order i, f, g, o:
//     a   = Xp[t] + Hp                      Xp[t] = x_t W_ih^T + b_ih + b_hh, Hp = h_{t-1} W_hh^T
//     i = sigmoid(a_i)  f = sigmoid(a_f)  g = tanh(a_g)  o = sigmoid(a_o)
//     c'  = f * c_{t-1} + i * g,            h' = o * tanh(c')
//     valid (t < lengths[b]):  c_t = c', h_t = h', y_t = h'
//     past the end:            c_t = c_{t-1}, h_t = h_{t-1}, y_t = 0
//   Saved for backward: the post-activation gates (i, f, g, o) and tanh(c'); the states
//   c_0..c_T themselves are kept by the caller.
//
// Backward (lstm_backward_pointwise), step t in reverse, with dh, dc the gradients w.r.t.
// h_t, c_t arriving from step t+1 (or dh_n, dc_n):
//     valid:  dh' = dh + dy_t,  dc' = dc + dh' * o * (1 - tanh(c')^2)
//             di = dc' * g * i(1-i)   df = dc' * c_{t-1} * f(1-f)
//             dg = dc' * i * (1-g^2)  do = dh' * tanh(c') * o(1-o)
//             dc <- dc' * f,          dh <- 0
//     past the end: dG = 0, dc and dh pass through unchanged.
//   The caller then adds dG_t W_hh into dh with a GEMM (beta = 1), giving dh_{t-1}.
//
// Memory layout (row-major, C-contiguous; T steps, B batch rows, H hidden units):
//   xp     acc_t[T][B][4H]   input projection plus both biases, all steps
//   hp     acc_t[B][4H]      this step's recurrent projection
//   h, c   T[T+1][B][H]      states; step t reads index t and writes index t+1
//   y      T[T][B][H]        outputs
//   gates  T[T][B][4H]       post-activation gates
//   tanh_c T[T][B][H]        tanh of the unmasked new cell state
//   dy     T[T][B][H];  dh, dc  acc_t[B][H] (read and overwritten);  dgates T[T][B][4H]
//   lengths int[B], every value in [1, T]
// Launch: one thread per (b, j), e = b * H + j < B * H; 1-D blocks (256 threads), 1-D grid.
#include "common.cuh"

using namespace cuda_rnn;

template <typename T>
__global__ void lstm_forward_pointwise(const acc_t<T>* __restrict__ xp,
                                       const acc_t<T>* __restrict__ hp,
                                       T* __restrict__ h, T* __restrict__ c,
                                       T* __restrict__ y, T* __restrict__ gates,
                                       T* __restrict__ tanh_c,
                                       const int* __restrict__ lengths, int t, int B, int H) {
    using A = acc_t<T>;
    const size_t e = element_index();
    const size_t n = static_cast<size_t>(B) * H;
    if (e >= n) return;
    const int b = static_cast<int>(e / H);
    const int j = static_cast<int>(e % H);
    const size_t G = 4 * static_cast<size_t>(H);
    const size_t row = static_cast<size_t>(t) * n * 4 + b * G;  // this step's gate row in xp
    const size_t hrow = b * G;
    const A i = sigmoid(xp[row + j] + hp[hrow + j]);
    const A f = sigmoid(xp[row + H + j] + hp[hrow + H + j]);
    const A g = tanh_(xp[row + 2 * H + j] + hp[hrow + 2 * H + j]);
    const A o = sigmoid(xp[row + 3 * H + j] + hp[hrow + 3 * H + j]);
    const size_t prev = static_cast<size_t>(t) * n + e;
    const size_t next = prev + n;
    const A c_prev = load(c, prev);
    const A c_new = f * c_prev + i * g;
    const A tc = tanh_(c_new);
    const A h_new = o * tc;
    store(gates, row + j, i);
    store(gates, row + H + j, f);
    store(gates, row + 2 * H + j, g);
    store(gates, row + 3 * H + j, o);
    store(tanh_c, prev, tc);
    if (step_valid(lengths, b, t)) {
        store(c, next, c_new);
        store(h, next, h_new);
        store(y, prev, h_new);
    } else {
        c[next] = c[prev];
        h[next] = h[prev];
        store(y, prev, A(0));
    }
}

template <typename T>
__global__ void lstm_backward_pointwise(const T* __restrict__ gates, const T* __restrict__ c,
                                        const T* __restrict__ tanh_c, const T* __restrict__ dy,
                                        acc_t<T>* __restrict__ dh, acc_t<T>* __restrict__ dc,
                                        T* __restrict__ dgates,
                                        const int* __restrict__ lengths, int t, int B, int H) {
    using A = acc_t<T>;
    const size_t e = element_index();
    const size_t n = static_cast<size_t>(B) * H;
    if (e >= n) return;
    const int b = static_cast<int>(e / H);
    const int j = static_cast<int>(e % H);
    const size_t G = 4 * static_cast<size_t>(H);
    const size_t row = static_cast<size_t>(t) * n * 4 + b * G;
    const size_t here = static_cast<size_t>(t) * n + e;
    const A dh_in = dh[e];
    const A dc_in = dc[e];
    if (!step_valid(lengths, b, t)) {
        // The state was copied through this step: its gradient passes back untouched.
        store(dgates, row + j, A(0));
        store(dgates, row + H + j, A(0));
        store(dgates, row + 2 * H + j, A(0));
        store(dgates, row + 3 * H + j, A(0));
        return;
    }
    const A i = load(gates, row + j);
    const A f = load(gates, row + H + j);
    const A g = load(gates, row + 2 * H + j);
    const A o = load(gates, row + 3 * H + j);
    const A tc = load(tanh_c, here);
    const A c_prev = load(c, here);
    const A dh_new = dh_in + load(dy, here);
    const A dc_new = dc_in + dh_new * o * (A(1) - tc * tc);
    store(dgates, row + j, dc_new * g * i * (A(1) - i));
    store(dgates, row + H + j, dc_new * c_prev * f * (A(1) - f));
    store(dgates, row + 2 * H + j, dc_new * i * (A(1) - g * g));
    store(dgates, row + 3 * H + j, dh_new * tc * o * (A(1) - o));
    dc[e] = dc_new * f;
    dh[e] = A(0);
}
