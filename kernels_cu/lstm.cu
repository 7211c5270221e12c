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
// The per-unit math is in lstm_cell.cuh, shared with the persistent kernels.
#include "common.cuh"
#include "lstm_cell.cuh"

using namespace cuda_rnn;

template <typename T>
__global__ void lstm_forward_pointwise(const acc_t<T>* __restrict__ xp,
                                       const acc_t<T>* __restrict__ hp,
                                       T* __restrict__ h, T* __restrict__ c,
                                       T* __restrict__ y, T* __restrict__ gates,
                                       T* __restrict__ tanh_c,
                                       const int* __restrict__ lengths, int t, int B, int H) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 4);
    if (!s.in_range()) return;
    A a[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) a[k] = xp[s.gate(k)] + hp[s.hgate(k)];
    const LstmStep<A> cell = lstm_cell_forward(a, load(c, s.here));
#pragma unroll
    for (int k = 0; k < 4; ++k) store(gates, s.gate(k), cell.gate[k]);
    store(tanh_c, s.here, cell.tanh_c);
    const size_t next = s.here + s.n;
    if (step_valid(lengths, s.b, t)) {
        store(c, next, cell.c);
        store(h, next, cell.h);
        store(y, s.here, cell.h);
    } else {
        c[next] = c[s.here];
        h[next] = h[s.here];
        store(y, s.here, A(0));
    }
}

template <typename T>
__global__ void lstm_backward_pointwise(const T* __restrict__ gates, const T* __restrict__ c,
                                        const T* __restrict__ tanh_c, const T* __restrict__ dy,
                                        acc_t<T>* __restrict__ dh, acc_t<T>* __restrict__ dc,
                                        T* __restrict__ dgates,
                                        const int* __restrict__ lengths, int t, int B, int H) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 4);
    if (!s.in_range()) return;
    if (!step_valid(lengths, s.b, t)) {
        // The state was copied through this step: its gradient passes back untouched.
        for (int k = 0; k < 4; ++k) store(dgates, s.gate(k), A(0));
        return;
    }
    A gate[4], dgate[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) gate[k] = load(gates, s.gate(k));
    const A dh_t = dh[s.e] + load(dy, s.here);
    const A dc_t = lstm_cell_backward(gate, load(tanh_c, s.here), load(c, s.here), dh_t, dc[s.e],
                                      dgate);
#pragma unroll
    for (int k = 0; k < 4; ++k) store(dgates, s.gate(k), dgate[k]);
    dc[s.e] = dc_t * gate[1];
    dh[s.e] = A(0);
}
