// lstm_layer_norm.cu: the per-time-step kernels of a layer-normalised LSTM layer-direction,
// one block per batch row, since each step normalises whole rows.
//
// Forward (lstm_forward_layer_norm), for step t and row b, gate blocks as in lstm.cu:
//     Hp   = h_{t-1} W_hh^T (the caller's GEMM);   hhat = LN(Hp) over its G*H values
//     a    = Xp[t] + hhat * ln_hh                  Xp[t] = LN(x_t W_ih^T) ln_ih + b_ih + b_hh
//     a_i += w_ci c_{t-1}, a_f += w_cf c_{t-1}, then i, f, g and c' = f c_{t-1} + i g, then
//     a_o += w_co c' (Peephole) and o, exactly as lstm.cu
//     chat = LN(c') over its H values;   h' = o * tanh(chat * ln_c + ln_bc)
//     LN(z) = (z - mean z) / sqrt(var z + 1e-5), var the biased variance
//   The state carried on is c' itself; lengths, zoneout and Projection update c, h and y as
//   in lstm.cu (with Projection y receives m = h' and lstm_forward_projection follows).
//   Saved for backward: the gates, tanh(chat * ln_c + ln_bc), hhat and chat, and the
//   1 / sqrt(var + eps) of each row (hrstd, crstd).
//
// Backward (lstm_backward_layer_norm), step t in reverse, dh, dc the gradients w.r.t. h_t,
// c_t arriving from step t+1 (dy_t added to dh, zoneout's share taken, as in lstm.cu):
//     do = dh' tanh(n) o(1-o)      dn = dh' o (1 - tanh(n)^2)      (n = chat ln_c + ln_bc)
//     dc' = rstd_c (u - mean u - chat mean(u chat)) + dc (+ do w_co),   u = dn ln_c
//     di, df, dg from dc' as in lstm.cu;  dc <- dc' f (+ peepholes) (+ zoneout's kept share)
//     dHp = rstd_h (v - mean v - hhat mean(v hhat)),   v = dG ln_hh   (means over G*H)
//   Past the end dG, dHp and dn are 0 and dc, dh pass through. The caller then adds
//   dHp_t W_hh into dh with a GEMM (beta = 1); after the loop it forms the gradients of Xp
//   (through LN(x W_ih^T)), of ln_ih, ln_hh (sums of dG * xhat, dG * hhat), ln_c and ln_bc
//   (of dn * chat, dn) and the bias (of dG).
//
// Template options: Peephole, ForgetGate, Projection, as in lstm.cu.
//
// Memory layout (row-major, C-contiguous; G gates, H units; with Projection h, y, dy are P
// wide and dh is dm, H wide, as in lstm.cu):
//   xp      acc_t[T][B][G*H]   Xp as above;   hp acc_t[B][G*H]  this step's h_{t-1} W_hh^T
//   w_ch    acc_t[(G-1)*H]     peephole weights (unread without Peephole)
//   ln_hh   acc_t[G*H];  ln_c, ln_bc acc_t[H]
//   h, c    T[T+1][B][H];  y T[T][B][H];  gates T[T][B][G*H];  tanh_c T[T][B][H]
//   hhat    T[T][B][G*H];  chat T[T][B][H];  hrstd, crstd acc_t[T][B]
//   cnew    acc_t[B][H]        c' of this step (scratch between the two normalisations)
//   dy T[T][B][H];  dh, dc acc_t[B][H] (read and overwritten);  dgates, dhp T[T][B][G*H]
//   dn      acc_t[T][B][H];  lengths int[B];  zh, zc T[T][B][P], T[T][B][H] or null, with
//           the scalars ph, pc after H, as in lstm.cu
// Launch: grid (B), one block per row, blockDim.x = 256 (a power of two); dynamic shared
// memory blockDim.x * sizeof(acc_t) for the row sums.
#include "common.cuh"
#include "lstm_cell.cuh"

using namespace cuda_rnn;

extern __shared__ __align__(16) unsigned char cuda_rnn_row_smem[];

namespace {

// The sum of every thread's v over the block, returned to all of them (a tree over shared
// memory: blockDim.x a power of two).
template <typename A> __device__ A block_sum(A v) {
    A* partial = reinterpret_cast<A*>(cuda_rnn_row_smem);
    const unsigned tid = threadIdx.x;
    partial[tid] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (tid < half) partial[tid] += partial[tid + half];
        __syncthreads();
    }
    const A total = partial[0];
    __syncthreads();  // the buffer is reused by the next sum
    return total;
}

constexpr double kLayerNormEps = 1e-5;  // rounded to A where it is used

// Mean and 1 / sqrt(var + eps) of the n values of row, centred for the variance.
template <typename A, typename Load> __device__ void row_moments(Load value, int n, A& mean,
                                                                A& rstd) {
    A sum = A(0);
    for (int k = threadIdx.x; k < n; k += blockDim.x) sum += value(k);
    mean = block_sum(sum) / A(n);
    A squares = A(0);
    for (int k = threadIdx.x; k < n; k += blockDim.x) {
        const A d = value(k) - mean;
        squares += d * d;
    }
    rstd = A(1) / sqrt(block_sum(squares) / A(n) + A(kLayerNormEps));
}

}  // namespace

template <typename T, bool Peephole, bool ForgetGate, bool Projection>
__global__ void lstm_forward_layer_norm(
    const acc_t<T>* __restrict__ xp, const acc_t<T>* __restrict__ hp,
    const acc_t<T>* __restrict__ w_ch, const acc_t<T>* __restrict__ ln_hh,
    const acc_t<T>* __restrict__ ln_c, const acc_t<T>* __restrict__ ln_bc, T* __restrict__ h,
    T* __restrict__ c, T* __restrict__ y, T* __restrict__ gates, T* __restrict__ tanh_c,
    T* __restrict__ hhat, acc_t<T>* __restrict__ hrstd, T* __restrict__ chat,
    acc_t<T>* __restrict__ crstd, acc_t<T>* __restrict__ cnew,
    const int* __restrict__ lengths, const T* __restrict__ zh, const T* __restrict__ zc, int t,
    int B, int H, acc_t<T> ph, acc_t<T> pc) {
    using A = acc_t<T>;
    constexpr int G = lstm_gate_count<ForgetGate>();
    const int b = blockIdx.x, GH = G * H;
    const size_t row = static_cast<size_t>(b) * GH;             // of hp
    const size_t grow = (static_cast<size_t>(t) * B + b) * GH;  // of [T][B][G*H]
    const size_t here = (static_cast<size_t>(t) * B + b) * H;   // of [T][B][H], [T+1] row t
    const size_t next = here + static_cast<size_t>(B) * H;      // row t+1 of the states
    const size_t stat = static_cast<size_t>(t) * B + b;
    A mean, rstd;
    row_moments<A>([&](int k) { return hp[row + k]; }, GH, mean, rstd);
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        A a[4] = {A(0), A(0), A(0), A(0)};
        for (int k = 0; k < G; ++k) {
            const int col = k * H + j;
            const A z = (hp[row + col] - mean) * rstd;
            store(hhat, grow + col, z);
            a[lstm_slot<ForgetGate>(k)] = xp[grow + col] + z * ln_hh[col];
        }
        const LstmStep<A> cell = lstm_cell_forward<Peephole, ForgetGate>(
            a, load(c, here + j), unit_peepholes<Peephole, ForgetGate>(w_ch, j, H));
        for (int k = 0; k < G; ++k) {
            store(gates, grow + k * H + j, cell.gate[lstm_slot<ForgetGate>(k)]);
        }
        cnew[static_cast<size_t>(b) * H + j] = cell.c;
    }
    const A* c_row = cnew + static_cast<size_t>(b) * H;
    A c_mean, c_rstd;
    row_moments<A>([&](int j) { return c_row[j]; }, H, c_mean, c_rstd);
    if (threadIdx.x == 0) {
        hrstd[stat] = rstd;
        crstd[stat] = c_rstd;
    }
    const bool valid = step_valid(lengths, b, t);
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        const A n = (c_row[j] - c_mean) * c_rstd;
        store(chat, here + j, n);
        const A tn = tanh_(n * ln_c[j] + ln_bc[j]);
        store(tanh_c, here + j, tn);
        // o again from its pre-activation, unrounded (the gates buffer holds it rounded).
        const int o_col = (G - 1) * H + j;
        A a_o = xp[grow + o_col] + (hp[row + o_col] - mean) * rstd * ln_hh[o_col];
        if constexpr (Peephole) {
            a_o += unit_peepholes<Peephole, ForgetGate>(w_ch, j, H).o * c_row[j];
        }
        lstm_store_step<T, Projection>(h, c, y, here + j, next + j, valid, c_row[j],
                                       sigmoid(a_o) * tn, Zoneout<T>{zh, ph},
                                       Zoneout<T>{zc, pc});
    }
}

template <typename T, bool Peephole, bool ForgetGate, bool Projection>
__global__ void lstm_backward_layer_norm(
    const acc_t<T>* __restrict__ w_ch, const acc_t<T>* __restrict__ ln_hh,
    const acc_t<T>* __restrict__ ln_c, const acc_t<T>* __restrict__ ln_bc,
    const T* __restrict__ gates, const T* __restrict__ c, const T* __restrict__ tanh_c,
    const T* __restrict__ hhat, const acc_t<T>* __restrict__ hrstd,
    const T* __restrict__ chat, const acc_t<T>* __restrict__ crstd,
    const T* __restrict__ dy, acc_t<T>* __restrict__ dh, acc_t<T>* __restrict__ dc,
    T* __restrict__ dgates, T* __restrict__ dhp, acc_t<T>* __restrict__ dn,
    const int* __restrict__ lengths, const T* __restrict__ zh, const T* __restrict__ zc, int t,
    int B, int H, acc_t<T> ph, acc_t<T> pc) {
    using A = acc_t<T>;
    constexpr int G = lstm_gate_count<ForgetGate>();
    const int b = blockIdx.x, GH = G * H;
    const size_t grow = (static_cast<size_t>(t) * B + b) * GH;
    const size_t here = (static_cast<size_t>(t) * B + b) * H;
    const size_t state = static_cast<size_t>(b) * H;  // of dh, dc
    const size_t stat = static_cast<size_t>(t) * B + b;
    if (!step_valid(lengths, b, t)) {  // the whole block: the state was copied through
        for (int k = threadIdx.x; k < GH; k += blockDim.x) {
            store(dgates, grow + k, A(0));
            store(dhp, grow + k, A(0));
        }
        for (int j = threadIdx.x; j < H; j += blockDim.x) dn[here + j] = A(0);
        return;
    }
    // With Projection dh is dm, whose zoneout share lstm_backward_projection already took.
    const Zoneout<T> zone_h{Projection ? nullptr : zh, Projection ? acc_t<T>(0) : ph},
        zone_c{zc, pc};
    auto total_h = [&](int j) {
        return Projection ? dh[state + j] : dh[state + j] + load(dy, here + j);
    };
    // dn, and the row sums of u = dn ln_c and u chat for the cell's normalisation.
    A u_sum = A(0), uc_sum = A(0);
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        const A dm = zone_h.share(total_h(j), here + j);
        const A o = load(gates, grow + (G - 1) * H + j), tn = load(tanh_c, here + j);
        const A d = dm * o * (A(1) - tn * tn);
        dn[here + j] = d;
        const A u = d * ln_c[j];
        u_sum += u;
        uc_sum += u * load(chat, here + j);
    }
    const A u_mean = block_sum(u_sum) / A(H), uc_mean = block_sum(uc_sum) / A(H);
    const A c_rstd = crstd[stat];
    // dG, the new dc and dh, and the row sums of v = dG ln_hh and v hhat.
    A v_sum = A(0), vh_sum = A(0);
    for (int j = threadIdx.x; j < H; j += blockDim.x) {
        const A total = total_h(j), dm = zone_h.share(total, here + j);
        A gate[4] = {A(0), A(1), A(0), A(0)};
        A dgate[4];
        for (int k = 0; k < G; ++k) {
            gate[lstm_slot<ForgetGate>(k)] = load(gates, grow + k * H + j);
        }
        const Peepholes<A> w = unit_peepholes<Peephole, ForgetGate>(w_ch, j, H);
        const A o = gate[3], tn = load(tanh_c, here + j);
        dgate[3] = dm * tn * o * (A(1) - o);
        const A u = dn[here + j] * ln_c[j];
        A dc_t = c_rstd * (u - u_mean - load(chat, here + j) * uc_mean) +
                 zone_c.share(dc[state + j], here + j);
        if constexpr (Peephole) dc_t += dgate[3] * w.o;
        lstm_cell_input_gradients<ForgetGate>(gate, load(c, here + j), dc_t, dgate);
        for (int k = 0; k < G; ++k) {
            const int col = k * H + j;
            // The sums see dG as stored, so that dHp is the exact backward of what is read
            // back below.
            const A dg = rounded<T>(dgate[lstm_slot<ForgetGate>(k)]);
            store(dgates, grow + col, dg);
            const A v = dg * ln_hh[col];
            v_sum += v;
            vh_sum += v * load(hhat, grow + col);
        }
        dc[state + j] = lstm_cell_dc_prev<Peephole, ForgetGate>(gate, dc_t, dgate, w) +
                        zone_c.keep(dc[state + j], here + j);
        dh[state + j] = zone_h.keep(total, here + j);
    }
    const A v_mean = block_sum(v_sum) / A(GH), vh_mean = block_sum(vh_sum) / A(GH);
    const A h_rstd = hrstd[stat];
    for (int k = threadIdx.x; k < GH; k += blockDim.x) {
        const A v = load(dgates, grow + k) * ln_hh[k];
        store(dhp, grow + k, h_rstd * (v - v_mean - load(hhat, grow + k) * vh_mean));
    }
}
