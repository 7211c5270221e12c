// lstm_cell.cuh: the LSTM's math for one hidden unit at one step, in the accumulator type A,
// shared by the pointwise kernels (lstm.cu) and the persistent ones (lstm_persistent.cuh) so
// that both compute the same equations (written out in lstm.cu's header):
//   forward   i, f, g, o from the pre-activations; c_t = f c_{t-1} + i g; h_t = o tanh(c_t)
//   backward  the pre-activation gradients dG = (di, df, dg, do) from dh and dc, the
//             gradients w.r.t. h_t and c_t arriving at this step (dy_t already in dh)
// Two compile-time options, the LSTM variants of cuda_rnn.cellspec.Options:
//   Peephole    i and f also read w_ci c_{t-1}, w_cf c_{t-1}; o reads w_co c_t
//   ForgetGate  false: f is the constant 1 (c_t = c_{t-1} + i g) and df is not formed
// The unit's values always sit in slots i, f, g, o = 0..3 (slot 1 holds f = 1 without a
// forget gate); the kernels map the slots to the G gate blocks of their arrays.
// No launch of its own: device functions on one unit's scalars, inlined into the kernels,
// which save what backward reads (the gates after their nonlinearities, tanh(c_t)); the last
// writes a unit's states and output, the same in every kernel that steps the LSTM.
#pragma once

#include "common.cuh"

namespace cuda_rnn {

template <typename A> struct LstmStep {
    A gate[4];  // i, f, g, o after their nonlinearities
    A c;        // f * c_prev + i * g
    A tanh_c;
    A h;        // o * tanh(c)
};

// Peephole weights of one unit: w_ci, w_cf, w_co (w_cf unused without a forget gate).
template <typename A> struct Peepholes {
    A i, f, o;
};

// The gate blocks of an array row: G = 4 (i, f, g, o), or 3 (i, g, o) without a forget gate.
template <bool ForgetGate> constexpr int lstm_gate_count() { return ForgetGate ? 4 : 3; }
// Slot (0..3 = i, f, g, o) of gate block k.
template <bool ForgetGate> __device__ __forceinline__ int lstm_slot(int k) {
    return ForgetGate || k == 0 ? k : k + 1;
}

// Unit j's peephole weights (zeros without Peephole, never read then).
template <bool Peephole, bool ForgetGate, typename A>
__device__ __forceinline__ Peepholes<A> unit_peepholes(const A* w_ch, int j, int H) {
    Peepholes<A> w{A(0), A(0), A(0)};
    if constexpr (Peephole) {
        w.i = w_ch[j];
        if constexpr (ForgetGate) {
            w.f = w_ch[H + j];
            w.o = w_ch[2 * H + j];
        } else {
            w.o = w_ch[H + j];
        }
    }
    return w;
}

// a: the pre-activations Xp + Hp of gates i, f, g, o (a[1] unread without a forget gate).
template <bool Peephole = false, bool ForgetGate = true, typename A>
__device__ __forceinline__ LstmStep<A> lstm_cell_forward(const A (&a)[4], A c_prev,
                                                         Peepholes<A> w = {}) {
    LstmStep<A> s;
    s.gate[0] = sigmoid(Peephole ? a[0] + w.i * c_prev : a[0]);
    if constexpr (ForgetGate) {
        s.gate[1] = sigmoid(Peephole ? a[1] + w.f * c_prev : a[1]);
    } else {
        s.gate[1] = A(1);
    }
    s.gate[2] = tanh_(a[2]);
    s.c = ForgetGate ? s.gate[1] * c_prev + s.gate[0] * s.gate[2]
                     : c_prev + s.gate[0] * s.gate[2];
    s.gate[3] = sigmoid(Peephole ? a[3] + w.o * s.c : a[3]);
    s.tanh_c = tanh_(s.c);
    s.h = s.gate[3] * s.tanh_c;
    return s;
}

// The gradients of the gates that write c_t (i, f, g) from dc_t, the full gradient w.r.t.
// c_t, into dgate[0..2] (dgate[1] = 0 without a forget gate).
template <bool ForgetGate = true, typename A>
__device__ __forceinline__ void lstm_cell_input_gradients(const A (&gate)[4], A c_prev, A dc_t,
                                                          A (&dgate)[4]) {
    const A i = gate[0], f = gate[1], g = gate[2];
    dgate[0] = dc_t * g * i * (A(1) - i);
    dgate[1] = ForgetGate ? dc_t * c_prev * f * (A(1) - f) : A(0);
    dgate[2] = dc_t * i * (A(1) - g * g);
}

// Writes dG into dgate (dgate[1] = 0 without a forget gate) and returns the full gradient
// w.r.t. c_t.
template <bool Peephole = false, bool ForgetGate = true, typename A>
__device__ __forceinline__ A lstm_cell_backward(const A (&gate)[4], A tanh_c, A c_prev, A dh,
                                                A dc, A (&dgate)[4], Peepholes<A> w = {}) {
    const A o = gate[3];
    dgate[3] = dh * tanh_c * o * (A(1) - o);
    A dc_t = dc + dh * o * (A(1) - tanh_c * tanh_c);
    if constexpr (Peephole) dc_t += dgate[3] * w.o;
    lstm_cell_input_gradients<ForgetGate>(gate, c_prev, dc_t, dgate);
    return dc_t;
}

// dL/dc_{t-1} from the step's dc_t and dG: through f, and through the peepholes of i and f.
template <bool Peephole = false, bool ForgetGate = true, typename A>
__device__ __forceinline__ A lstm_cell_dc_prev(const A (&gate)[4], A dc_t, const A (&dgate)[4],
                                               Peepholes<A> w = {}) {
    A dc_prev = ForgetGate ? dc_t * gate[1] : dc_t;
    if constexpr (Peephole) {
        dc_prev += dgate[0] * w.i;
        if constexpr (ForgetGate) dc_prev += dgate[1] * w.f;
    }
    return dc_prev;
}

// Writes step t's states and output from the new values c' and h' (m with Projection, which
// goes to y while h waits for the projection kernel): at a valid step c_t and h_t with
// zoneout applied and y_t = h_t; past the end the states are kept and y_t = 0. here indexes
// row t of the states and of y, next row t+1 of the states.
template <typename T, bool Projection>
__device__ __forceinline__ void lstm_store_step(T* h, T* c, T* y, size_t here, size_t next,
                                                bool valid, acc_t<T> c_new, acc_t<T> h_new,
                                                Zoneout<T> zone_h, Zoneout<T> zone_c) {
    if (valid) store(c, next, zone_c.mix(load(c, here), c_new, here));
    if constexpr (Projection) {
        store(y, here, h_new);
        if (!valid) c[next] = c[here];
    } else if (valid) {
        const acc_t<T> h_t = zone_h.mix(load(h, here), h_new, here);
        store(h, next, h_t);
        store(y, here, h_t);
    } else {
        c[next] = c[here];
        h[next] = h[here];
        store(y, here, acc_t<T>(0));
    }
}

}  // namespace cuda_rnn
