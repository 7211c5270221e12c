// lstm_cell.cuh: the LSTM's math for one hidden unit at one step, in the accumulator type A,
// shared by the pointwise kernels (lstm.cu) and the persistent ones (lstm_persistent.cuh) so
// that both compute the same equations (written out in lstm.cu's header):
//   forward   i, f, g, o from the pre-activations; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)
//   backward  the pre-activation gradients dG = (di, df, dg, do) from dh and dc, the
//             gradients w.r.t. h_t and c_t arriving at this step (dy_t already in dh)
// No arrays and no launch of its own: device functions on one unit's scalars, inlined into
// the kernels, which save what backward reads (the gates after their nonlinearities, tanh(c_t)).
#pragma once

#include "common.cuh"

namespace cuda_rnn {

template <typename A> struct LstmStep {
    A gate[4];  // i, f, g, o after their nonlinearities
    A c;        // f * c_prev + i * g
    A tanh_c;
    A h;        // o * tanh(c)
};

// a: the pre-activations Xp + Hp of gates i, f, g, o.
template <typename A>
__device__ __forceinline__ LstmStep<A> lstm_cell_forward(const A (&a)[4], A c_prev) {
    LstmStep<A> s;
    s.gate[0] = sigmoid(a[0]);
    s.gate[1] = sigmoid(a[1]);
    s.gate[2] = tanh_(a[2]);
    s.gate[3] = sigmoid(a[3]);
    s.c = s.gate[1] * c_prev + s.gate[0] * s.gate[2];
    s.tanh_c = tanh_(s.c);
    s.h = s.gate[3] * s.tanh_c;
    return s;
}

// Writes dG into dgate and returns the full gradient w.r.t. c_t (dL/dc_{t-1} is that times f).
template <typename A>
__device__ __forceinline__ A lstm_cell_backward(const A (&gate)[4], A tanh_c, A c_prev, A dh,
                                                A dc, A (&dgate)[4]) {
    const A i = gate[0], f = gate[1], g = gate[2], o = gate[3];
    const A dc_t = dc + dh * o * (A(1) - tanh_c * tanh_c);
    dgate[0] = dc_t * g * i * (A(1) - i);
    dgate[1] = dc_t * c_prev * f * (A(1) - f);
    dgate[2] = dc_t * i * (A(1) - g * g);
    dgate[3] = dh * tanh_c * o * (A(1) - o);
    return dc_t;
}

}  // namespace cuda_rnn
