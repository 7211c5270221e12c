// gru_cell.cuh: the GRU's math for one hidden unit at one step, in the accumulator type A,
// shared by the pointwise kernels (gru.cu) and the persistent ones (gru_persistent.cuh) so
// that both compute the same equations (written out in gru.cu's header):
//   forward   r, z, n from the input projection xp and the recurrent one hp (b_hh included);
//             h_t = n + z (h_{t-1} - n)
//   backward  the gradients w.r.t. xp and hp from dh, the gradient w.r.t. h_t arriving at
//             this step (dy_t included); they differ in the n block, which r scales on the
//             recurrent side only
// No arrays and no launch of its own: device functions on one unit's scalars, inlined into
// the kernels, which save what backward reads (r, z, n and the recurrent n pre-activation hn).
#pragma once

#include "common.cuh"

namespace cuda_rnn {

template <typename A> struct GruStep {
    A gate[3];  // r, z, n after their nonlinearities
    A h;        // n + z * (h_prev - n)
};

template <typename A>
__device__ __forceinline__ GruStep<A> gru_cell_forward(const A (&xp)[3], const A (&hp)[3],
                                                       A h_prev) {
    GruStep<A> s;
    s.gate[0] = sigmoid(xp[0] + hp[0]);
    s.gate[1] = sigmoid(xp[1] + hp[1]);
    s.gate[2] = tanh_(xp[2] + s.gate[0] * hp[2]);
    s.h = s.gate[2] + s.gate[1] * (h_prev - s.gate[2]);
    return s;
}

// hn: the saved recurrent n pre-activation hp[2]. Writes dL/dxp and dL/dhp; returns the part
// of dL/dh_{t-1} that does not pass through W_hh (dh * z).
template <typename A>
__device__ __forceinline__ A gru_cell_backward(const A (&gate)[3], A hn, A h_prev, A dh,
                                               A (&dxp)[3], A (&dhp)[3]) {
    const A r = gate[0], z = gate[1], n = gate[2];
    const A dn = dh * (A(1) - z) * (A(1) - n * n);
    const A dz = dh * (h_prev - n) * z * (A(1) - z);
    const A dr = dn * hn * r * (A(1) - r);
    dxp[0] = dr;
    dxp[1] = dz;
    dxp[2] = dn;
    dhp[0] = dr;
    dhp[1] = dz;
    dhp[2] = dn * r;
    return dh * z;
}

}  // namespace cuda_rnn
