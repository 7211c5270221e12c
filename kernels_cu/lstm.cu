// lstm.cu: the per-time-step pointwise kernels of an LSTM layer-direction.
//
// Forward (lstm_forward_pointwise), for step t, with gate blocks in PyTorch order i, f, g, o
// (i, g, o without a forget gate):
//     a   = Xp[t] + Hp                      Xp[t] = x_t W_ih^T + b_ih + b_hh, Hp = h_{t-1} W_hh^T
//     a_i += w_ci c_{t-1}, a_f += w_cf c_{t-1}                          (Peephole)
//     i = sigmoid(a_i)  f = sigmoid(a_f) (1 without ForgetGate)  g = tanh(a_g)
//     c'  = f * c_{t-1} + i * g
//     a_o += w_co c'                                                    (Peephole)
//     o = sigmoid(a_o),                     h' = o * tanh(c')
//     valid (t < lengths[b]):  c_t = c', h_t = h', y_t = h_t
//     past the end:            c_t = c_{t-1}, h_t = h_{t-1}, y_t = 0
//     zoneout (masks d_h, d_c, 1 keeps the previous value) at a valid step:
//                              c_t = c_{t-1} + (1 - d_c)(c' - c_{t-1}), h_t likewise with d_h
//   With Projection, h' is m_t: y receives m_t at every step and h is left alone; the caller
//   then forms h'_{t+1} = m_t W_hr^T with a GEMM and runs lstm_forward_projection, which
//   keeps h_t = h_{t-1}, y_t = 0 past the end and otherwise applies d_h and copies y_t = h_t.
//   Saved for backward: the post-activation gates and tanh(c'); the states c_0..c_T
//   themselves are kept by the caller.
//
// Backward (lstm_backward_pointwise), step t in reverse, with dh, dc the gradients w.r.t.
// h_t, c_t arriving from step t+1 (or dh_n, dc_n):
//     valid:  dh' = dh + dy_t,  do = dh' * tanh(c') * o(1-o)
//             dc' = dc + dh' * o * (1 - tanh(c')^2) (+ do * w_co with Peephole)
//             di = dc' * g * i(1-i)   df = dc' * c_{t-1} * f(1-f)   dg = dc' * i * (1-g^2)
//             dc <- dc' * f (+ di * w_ci + df * w_cf with Peephole),   dh <- 0
//             with zoneout dh + dy_t and dc enter as (1 - d_h) and (1 - d_c) times
//             themselves, and the rest, d_h (dh + dy_t) and d_c dc, is added to dh and dc
//     past the end: dG = 0, dc and dh pass through unchanged.
//   The caller then adds dG_t W_hh into dh with a GEMM (beta = 1), giving dh_{t-1}, and after
//   the loop forms dw_ch from dG and the saved states.
//   With Projection, dh is dm = dL/dm_t (dy is unread): before this launch
//   lstm_backward_projection forms dhr_t = dh + dy_t (zero past the end, where dh passes
//   through; with zoneout dhr_t = (1 - d_h)(dh + dy_t) and dh keeps d_h (dh + dy_t)), and a
//   GEMM dm = dhr_t W_hr; after the loop dW_hr = sum_t dhr_t^T m_t.
//
// Template options (every combination is instantiated, see cuda_rnn/cuda/loader.py):
//   Peephole    read the peephole weights w_ch
//   ForgetGate  G = 4 gate blocks; false: G = 3, the original LSTM c_t = c_{t-1} + i * g
//   Projection  h = W_hr m of P = proj_size units, as above
// The two projection kernels are templated on the storage type only.
//
// Memory layout (row-major, C-contiguous; T steps, B batch rows, H hidden units, G gates;
// with Projection, h, y, dy and the projection kernels' dh are P wide instead of H):
//   xp     acc_t[T][B][G*H]  input projection plus both biases, all steps
//   hp     acc_t[B][G*H]     this step's recurrent projection
//   w_ch   acc_t[(G-1)*H]    peephole weights [w_ci; w_cf; w_co] ([w_ci; w_co] without a
//                            forget gate); unread, any valid pointer, without Peephole
//   h, c   T[T+1][B][H]      states; step t reads index t and writes index t+1
//   y      T[T][B][H]        outputs
//   gates  T[T][B][G*H]      post-activation gates
//   tanh_c T[T][B][H]        tanh of the unmasked new cell state
//   dy     T[T][B][H];  dh, dc  acc_t[B][H] (read and overwritten);  dgates T[T][B][G*H]
//   dhr    T[T][B][P]        dL/dh_t of each valid step, zero past the end (Projection)
//   lengths int[B], every value in [1, T]
//   zh, zc T[T][B][P], T[T][B][H]  zoneout masks of h and c, or null: then the scalars ph, pc
//                            (the probabilities, eval mode; 0 for none) after H (P). zh and
//                            ph are read by the projection kernels, not by the pointwise
//                            ones, with Projection
// Launch: one thread per (b, j), e = b * H + j < B * H (b * P + p < B * P for the projection
// kernels); 1-D blocks (256 threads), 1-D grid.
// The per-unit math is in lstm_cell.cuh, shared with the persistent kernels.
#include "common.cuh"
#include "lstm_cell.cuh"

using namespace cuda_rnn;

template <typename T, bool Peephole, bool ForgetGate, bool Projection>
__global__ void lstm_forward_pointwise(const acc_t<T>* __restrict__ xp,
                                       const acc_t<T>* __restrict__ hp,
                                       const acc_t<T>* __restrict__ w_ch,
                                       T* __restrict__ h, T* __restrict__ c,
                                       T* __restrict__ y, T* __restrict__ gates,
                                       T* __restrict__ tanh_c,
                                       const int* __restrict__ lengths,
                                       const T* __restrict__ zh, const T* __restrict__ zc,
                                       int t, int B, int H, acc_t<T> ph, acc_t<T> pc) {
    using A = acc_t<T>;
    constexpr int G = lstm_gate_count<ForgetGate>();
    const StepElement s = step_element(t, B, H, G);
    if (!s.in_range()) return;
    A a[4] = {A(0), A(0), A(0), A(0)};
#pragma unroll
    for (int k = 0; k < G; ++k) a[lstm_slot<ForgetGate>(k)] = xp[s.gate(k)] + hp[s.hgate(k)];
    const LstmStep<A> cell = lstm_cell_forward<Peephole, ForgetGate>(
        a, load(c, s.here), unit_peepholes<Peephole, ForgetGate>(w_ch, s.j, H));
#pragma unroll
    for (int k = 0; k < G; ++k) store(gates, s.gate(k), cell.gate[lstm_slot<ForgetGate>(k)]);
    store(tanh_c, s.here, cell.tanh_c);
    lstm_store_step<T, Projection>(h, c, y, s.here, s.here + s.n,
                                   step_valid(lengths, s.b, t), cell.c, cell.h,
                                   Zoneout<T>{zh, ph}, Zoneout<T>{zc, pc});
}

template <typename T, bool Peephole, bool ForgetGate, bool Projection>
__global__ void lstm_backward_pointwise(const acc_t<T>* __restrict__ w_ch,
                                        const T* __restrict__ gates, const T* __restrict__ c,
                                        const T* __restrict__ tanh_c, const T* __restrict__ dy,
                                        acc_t<T>* __restrict__ dh, acc_t<T>* __restrict__ dc,
                                        T* __restrict__ dgates,
                                        const int* __restrict__ lengths,
                                        const T* __restrict__ zh, const T* __restrict__ zc,
                                        int t, int B, int H, acc_t<T> ph, acc_t<T> pc) {
    using A = acc_t<T>;
    constexpr int G = lstm_gate_count<ForgetGate>();
    const StepElement s = step_element(t, B, H, G);
    if (!s.in_range()) return;
    if (!step_valid(lengths, s.b, t)) {
        // The state was copied through this step: its gradient passes back untouched.
        for (int k = 0; k < G; ++k) store(dgates, s.gate(k), A(0));
        return;
    }
    A gate[4] = {A(0), A(1), A(0), A(0)};
    A dgate[4];
#pragma unroll
    for (int k = 0; k < G; ++k) gate[lstm_slot<ForgetGate>(k)] = load(gates, s.gate(k));
    const Peepholes<A> w = unit_peepholes<Peephole, ForgetGate>(w_ch, s.j, H);
    // With Projection dh is dm, whose zoneout share lstm_backward_projection already took.
    const Zoneout<T> zone_h{Projection ? nullptr : zh, Projection ? acc_t<T>(0) : ph},
        zone_c{zc, pc};
    const A total_h = Projection ? dh[s.e] : dh[s.e] + load(dy, s.here);
    const A total_c = dc[s.e];
    const A dc_t = lstm_cell_backward<Peephole, ForgetGate>(
        gate, load(tanh_c, s.here), load(c, s.here), zone_h.share(total_h, s.here),
        zone_c.share(total_c, s.here), dgate, w);
#pragma unroll
    for (int k = 0; k < G; ++k) store(dgates, s.gate(k), dgate[lstm_slot<ForgetGate>(k)]);
    dc[s.e] = lstm_cell_dc_prev<Peephole, ForgetGate>(gate, dc_t, dgate, w) +
              zone_c.keep(total_c, s.here);
    dh[s.e] = zone_h.keep(total_h, s.here);
}

// After the GEMM h'_{t+1} = m_t W_hr^T: past the end the state is kept and y_t is 0; at a
// valid step zoneout mixes h'_{t+1} with h_t.
template <typename T>
__global__ void lstm_forward_projection(T* __restrict__ h, T* __restrict__ y,
                                        const int* __restrict__ lengths,
                                        const T* __restrict__ zh, int t, int B, int P,
                                        acc_t<T> ph) {
    const StepElement s = step_element(t, B, P, 1);
    if (!s.in_range()) return;
    const size_t next = s.here + s.n;
    const Zoneout<T> zoneout{zh, ph};
    if (step_valid(lengths, s.b, t)) {
        if (zoneout.on()) store(h, next, zoneout.mix(load(h, s.here), load(h, next), s.here));
        y[s.here] = h[next];
    } else {
        h[next] = h[s.here];
        store(y, s.here, acc_t<T>(0));
    }
}

// Before the GEMM dm = dhr_t W_hr: dhr_t = dh + dy_t at a valid step (dh then restarts from 0
// for the GEMM dh += dG_t W_hh); past the end dhr_t = 0 and dh passes through.
// With zoneout dhr_t is the new value's share of dh + dy_t and dh keeps the old value's.
template <typename T>
__global__ void lstm_backward_projection(const T* __restrict__ dy, acc_t<T>* __restrict__ dh,
                                         T* __restrict__ dhr, const int* __restrict__ lengths,
                                         const T* __restrict__ zh, int t, int B, int P,
                                        acc_t<T> ph) {
    const StepElement s = step_element(t, B, P, 1);
    if (!s.in_range()) return;
    if (step_valid(lengths, s.b, t)) {
        const Zoneout<T> zoneout{zh, ph};
        const acc_t<T> total = dh[s.e] + load(dy, s.here);
        store(dhr, s.here, zoneout.share(total, s.here));
        dh[s.e] = zoneout.keep(total, s.here);
    } else {
        store(dhr, s.here, acc_t<T>(0));
    }
}
