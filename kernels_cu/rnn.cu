// rnn.cu: the per-time-step pointwise kernels of a vanilla (Elman) RNN layer-direction.
//
// Forward (rnn_forward_pointwise), for step t:
//     a' = act(Xp[t] + Hp)        Xp[t] = x_t W_ih^T + b_ih + b_hh,  Hp = h_{t-1} W_hh^T
//     act: 0 = tanh, 1 = relu, 2 = sigmoid (the `nonlinearity` argument)
//     valid (t < lengths[b]):  h_t = a', y_t = h_t;   past the end: h_t = h_{t-1}, y_t = 0
//     with zoneout (mask d, 1 keeps the previous value): h_t = h_{t-1} + (1 - d)(a' - h_{t-1})
//   Saved for backward: a' (the new value before zoneout), from which act' is computed:
//   tanh' = 1 - a'^2, relu' = [a' > 0], sigmoid' = a' (1 - a').
//
// Backward (rnn_backward_pointwise), step t in reverse, dh = gradient w.r.t. h_t:
//     valid:  dA_t = (dh + dy_t) * act'(a'),  dh <- 0
//             with zoneout: dA_t = (1 - d)(dh + dy_t) act'(a'),  dh <- d (dh + dy_t)
//     past the end: dA_t = 0 and dh passes through unchanged.
//   The caller adds dA_t W_hh into dh with a GEMM (beta = 1), giving dh_{t-1}.
//
// Memory layout (row-major, C-contiguous; T steps, B batch rows, H hidden units):
//   xp  acc_t[T][B][H];  hp acc_t[B][H];  h T[T+1][B][H] (step t reads t, writes t+1)
//   y, act, dy, da  T[T][B][H];  dh acc_t[B][H] (read and overwritten)
//   lengths int[B], every value in [1, T]
//   zh  T[T][B][H] zoneout mask of h, or null (then ph, the probability, eval mode; 0: none)
// Launch: one thread per (b, j), e = b * H + j < B * H; 1-D blocks (256 threads), 1-D grid.
#include "common.cuh"

using namespace cuda_rnn;

enum Nonlinearity { kTanh = 0, kRelu = 1, kSigmoid = 2 };

template <typename A> __device__ __forceinline__ A activate(A a, int nonlinearity) {
    if (nonlinearity == kTanh) return tanh_(a);
    if (nonlinearity == kRelu) return a > A(0) ? a : A(0);
    return sigmoid(a);
}

template <typename A> __device__ __forceinline__ A derivative(A out, int nonlinearity) {
    if (nonlinearity == kTanh) return A(1) - out * out;
    if (nonlinearity == kRelu) return out > A(0) ? A(1) : A(0);
    return out * (A(1) - out);
}

template <typename T>
__global__ void rnn_forward_pointwise(const acc_t<T>* __restrict__ xp,
                                      const acc_t<T>* __restrict__ hp, T* __restrict__ h,
                                      T* __restrict__ y, T* __restrict__ act,
                                      const int* __restrict__ lengths,
                                      const T* __restrict__ zh, int t, int B, int H,
                                      int nonlinearity, acc_t<T> ph) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 1);
    if (!s.in_range()) return;
    const A a = activate(xp[s.here] + hp[s.e], nonlinearity);
    store(act, s.here, a);
    const size_t next = s.here + s.n;
    if (step_valid(lengths, s.b, t)) {
        const A h_t = Zoneout<T>{zh, ph}.mix(load(h, s.here), a, s.here);
        store(h, next, h_t);
        store(y, s.here, h_t);
    } else {
        h[next] = h[s.here];
        store(y, s.here, A(0));
    }
}

template <typename T>
__global__ void rnn_backward_pointwise(const T* __restrict__ act, const T* __restrict__ dy,
                                       acc_t<T>* __restrict__ dh, T* __restrict__ da,
                                       const int* __restrict__ lengths,
                                       const T* __restrict__ zh, int t, int B, int H,
                                       int nonlinearity, acc_t<T> ph) {
    using A = acc_t<T>;
    const StepElement s = step_element(t, B, H, 1);
    if (!s.in_range()) return;
    if (!step_valid(lengths, s.b, t)) {
        store(da, s.here, A(0));
        return;
    }
    const Zoneout<T> zoneout{zh, ph};
    const A total = dh[s.e] + load(dy, s.here);
    store(da, s.here,
          zoneout.share(total, s.here) * derivative(load(act, s.here), nonlinearity));
    dh[s.e] = zoneout.keep(total, s.here);
}
