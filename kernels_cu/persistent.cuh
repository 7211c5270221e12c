// persistent.cuh: the persistent loop and its machinery, shared by the LSTM and GRU kernels
// of lstm_persistent.cuh and gru_persistent.cuh (one cooperative launch runs every time step
// of one layer-direction). The loop is written once (forward_loop, backward_loop); each cell
// header supplies a policy with its equations and its arrays (see "Cell policy" below).
//
// Work split. The grid has one block per group of `hs` hidden units ("units_per_block").
// Each block keeps the slice of W_hh its units need resident in shared memory for the
// whole sequence, so W_hh is read from device memory once per launch instead of once per
// step. Blocks exchange only the per-step activations (h_t forward, dG_t backward) through
// device memory (L2), with one grid-wide barrier (cooperative_groups grid sync) per step:
//   forward   per step t: Hp = h_{t-1} W_hh^T for the block's G * hs rows (resident rows),
//             the cell's forward per (unit, batch row), h_t written to hseq[t+1], grid sync
//   backward  per step t in reverse: the cell's backward per (unit, batch row) writes dG_t,
//             grid sync, dh_{t-1} = dG_t W_hh for the block's hs columns (resident columns)
//             plus the terms outside W_hh
//
// The recurrent product. Every product here is C[m][n] = sum_k A[m][k] * Bt[n][k] with both
// operands K-contiguous in shared memory ("TN"): forward A = the block's W_hh rows and
// Bt = h_{t-1}; backward A = dG_t and Bt = the block's W_hh columns. Warps split the output
// into 16x8 tiles (mma.sync m16n8k8 TF32 for float, m16n8k16 bf16 for __nv_bfloat16, float
// accumulators) and, when there are fewer tiles than warps, split K too ("ksplit"); each
// (tile, K-slice) task writes its partial tile to a float reduction buffer that the
// pointwise phase sums. The activation operand is staged from global memory in K-chunks
// of `chunk` columns, so a large batch still fits next to the resident weights.
//
// Float without TF32 ("exact" mode): each operand x is split as hi = tf32(x), lo = tf32(x - hi)
// and the product is hi*hi + hi*lo + lo*hi, three tensor-core passes with close to float
// accuracy; with TF32 allowed one pass is used.
//
// Arguments every persistent kernel takes (T the storage type; B batch, H hidden; the cell
// headers list the rest; every array is required, the host passes lengths = steps for full
// length): w_hh (G*H, H), PyTorch's weight_hh; lengths (B,) int32, every value in [1, steps],
// step t of sequence b real while t < lengths[b]; forward xp (steps, B, G*H) in acc_t<T>,
// hseq (steps+1, B, H) with hseq[0] = h_0 on entry, y (steps, B, H), zero past each length;
// backward dy (steps, B, H), dh_n (B, H) in acc_t<T> and dh0 (B, H) out in acc_t<T>
// (it may alias dh_n: each block reads its units' entries before the loop and writes them
// after). Then the ints of Launch: steps, B, H, the layout from the host planner
// (cuda_rnn/cuda/persistent.py) and allow_tf32.
//
// Launch shape: a cooperative launch of ceil(H / hs) blocks of kThreads threads with the
// dynamic shared memory the planner computes; every block must be resident at once (the host
// checks the occupancy first).
//
// Shared-memory layout (bytes, every region 16-byte aligned, offsets chosen by the host,
// cuda_rnn/cuda/persistent.py, and passed in as kernel arguments):
//   [0, stage_offset)                 resident weights, rows of `ldw` elements
//   [stage_offset, red_offset)        activation chunk, rows of `lds` elements
//   [red_offset, state_offset)        ksplit x Mpad x ldr floats of partial tiles
//   [state_offset, ...)               per-unit float states, hs x B each: forward the cell's
//                                     one recurrent state; backward dh, the terms outside
//                                     W_hh, then the cell's own (LSTM: dc)
// Row strides are padded so that a row is 4 words past a multiple of 8 words: the eight rows
// one fragment load touches then fall in distinct banks (no shared-memory bank conflicts).
//
// Cell policy. A cell header defines a policy P (a struct template over T) with
//   kGates = G;
//   Forward : ForwardArrays<T> and Backward : BackwardArrays<T>, the kernel's arrays;
//   forward_state(io): the (B, H) initial state kept on chip in the forward loop;
//   forward_step(io, s, next, rec, real, state) for one (unit, batch row) at step t, with
//     rec the reduced recurrent products of the unit's G gate rows and state the on-chip
//     state: updates state, writes the cell's own outputs (next indexes row t+1 of a
//     (steps+1, B, H) array), returns h' and the h_t to store;
//   backward_step(io, s, dh, real, own): writes dG_t for one (unit, batch row) from dh, the
//     gradient w.r.t. h_t (dy_t included, 0 past the end), and returns its part of
//     dL/dh_{t-1} outside W_hh; own points at the cell's backward states;
//   recurrent_gradient(io): the (steps, B, G*H) gradient the backward product reads;
//   begin_backward / end_backward(io, batch, hidden, slice, own): load / store those states.
#pragma once

#include <cooperative_groups.h>

#include "common.cuh"

// The dynamic shared memory of every persistent kernel, at file scope so that the loops in
// the namespace below and a host compile of this header (tests/cudasim) name the same array.
extern __shared__ __align__(16) unsigned char cuda_rnn_persistent_smem[];

namespace cuda_rnn {
namespace persistent {

// Threads per block of every persistent kernel (8 warps); the host launches exactly this many.
constexpr int kThreads = 256;
constexpr int kWarpSize = 32;

// K of one tensor-core instruction for each storage type.
template <typename T> struct MmaStep;
template <> struct MmaStep<float> { static constexpr int value = 8; };
template <> struct MmaStep<__nv_bfloat16> { static constexpr int value = 16; };

template <typename T> __device__ __forceinline__ T zero();
template <> __device__ __forceinline__ float zero<float>() { return 0.0f; }
template <> __device__ __forceinline__ __nv_bfloat16 zero<__nv_bfloat16>() {
    return __float2bfloat16_rn(0.0f);
}

// L2-only load: the activations a block reads were written by other blocks during this
// launch, and an L1 line filled earlier could hold stale bytes next to them.
__device__ __forceinline__ float load_l2(const float* p) { return __ldcg(p); }
__device__ __forceinline__ float load_l2(const __nv_bfloat16* p) {
    return __bfloat162float(__ldcg(p));
}

// The three PTX instructions of the product. A host compile of this header (the CPU device
// simulator, tests/cudasim) has no PTX: there they are only declared, and the simulator
// defines them with the semantics of the PTX ISA.
#if defined(__CUDA_ARCH__)
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#else
uint32_t to_tf32(float x);
void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
#endif

// One K-step of a 16x8 tile. Fragment ownership (PTX ISA, mma.m16n8k8 .tf32): with
// g = lane / 4 and q = lane % 4, A holds (g, q), (g+8, q), (g, q+4), (g+8, q+4) and B holds
// (k = q, n = g), (k = q+4, n = g). Rows past a_rows / b_rows read as zero.
__device__ __forceinline__ void tile_step(const float* a_top, const float* a_bottom,
                                          const float* b_row, int k0, int q, bool exact,
                                          float (&acc)[4]) {
    const float av[4] = {a_top ? a_top[k0 + q] : 0.0f, a_bottom ? a_bottom[k0 + q] : 0.0f,
                         a_top ? a_top[k0 + q + 4] : 0.0f,
                         a_bottom ? a_bottom[k0 + q + 4] : 0.0f};
    const float bv[2] = {b_row ? b_row[k0 + q] : 0.0f, b_row ? b_row[k0 + q + 4] : 0.0f};
    uint32_t a[4], b[2];
#pragma unroll
    for (int i = 0; i < 4; ++i) a[i] = to_tf32(av[i]);
#pragma unroll
    for (int i = 0; i < 2; ++i) b[i] = to_tf32(bv[i]);
    mma_tf32(acc, a, b);
    if (exact) {
        uint32_t a_small[4], b_small[2];
#pragma unroll
        for (int i = 0; i < 4; ++i) a_small[i] = to_tf32(av[i] - __uint_as_float(a[i]));
#pragma unroll
        for (int i = 0; i < 2; ++i) b_small[i] = to_tf32(bv[i] - __uint_as_float(b[i]));
        mma_tf32(acc, a_small, b);
        mma_tf32(acc, a, b_small);
    }
}

// bf16 (mma.m16n8k16): with 32-bit words of two elements, A holds words (g, q), (g+8, q),
// (g, q+4), (g+8, q+4) and B holds words (n = g, k-word q), (n = g, k-word q+4).
__device__ __forceinline__ void tile_step(const __nv_bfloat16* a_top,
                                          const __nv_bfloat16* a_bottom,
                                          const __nv_bfloat16* b_row, int k0, int q, bool,
                                          float (&acc)[4]) {
    const int w = k0 / 2 + q;
    const uint32_t* at = reinterpret_cast<const uint32_t*>(a_top);
    const uint32_t* ab = reinterpret_cast<const uint32_t*>(a_bottom);
    const uint32_t* bw = reinterpret_cast<const uint32_t*>(b_row);
    const uint32_t a[4] = {at ? at[w] : 0u, ab ? ab[w] : 0u, at ? at[w + 4] : 0u,
                           ab ? ab[w + 4] : 0u};
    const uint32_t b[2] = {bw ? bw[w] : 0u, bw ? bw[w + 4] : 0u};
    mma_bf16(acc, a, b);
}

// red[s][m][n] (+)= sum over this K-chunk of A[m][k] * Bt[n][k], for every 16x8 tile of the
// a_rows x b_rows output and every K-slice s < ksplit. `first` stores instead of adding, so
// the buffer needs no clearing. The task -> warp map is the same for every chunk, so each
// partial tile is only ever updated by the lanes that wrote it.
template <typename T>
__device__ void accumulate_tiles(const T* A, int lda, int a_rows, const T* Bt, int ldb,
                                 int b_rows, int k_elems, float* red, int ldr, int ksplit,
                                 bool first, bool exact) {
    constexpr int kStep = MmaStep<T>::value;
    const int warp = threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    const int g = lane / 4;
    const int q = lane % 4;
    const int mt = (a_rows + 15) / 16;
    const int nt = (b_rows + 7) / 8;
    const int ksteps = (k_elems + kStep - 1) / kStep;
    const int red_stride = mt * 16 * ldr;
    const int tasks = mt * nt * ksplit;
    for (int task = warp; task < tasks; task += kThreads / kWarpSize) {
        const int s = task % ksplit;
        const int job = task / ksplit;
        const int m0 = (job / nt) * 16;
        const int n0 = (job % nt) * 8;
        const T* a_top = m0 + g < a_rows ? A + (m0 + g) * lda : nullptr;
        const T* a_bottom = m0 + g + 8 < a_rows ? A + (m0 + g + 8) * lda : nullptr;
        const T* b = n0 + g < b_rows ? Bt + (n0 + g) * ldb : nullptr;
        // Two accumulator sets alternate so consecutive mma instructions do not wait on
        // each other's result.
        float acc0[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        float acc1[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const int k_end = ksteps * (s + 1) / ksplit;
        int ks = ksteps * s / ksplit;
        for (; ks + 1 < k_end; ks += 2) {
            tile_step(a_top, a_bottom, b, ks * kStep, q, exact, acc0);
            tile_step(a_top, a_bottom, b, (ks + 1) * kStep, q, exact, acc1);
        }
        if (ks < k_end) tile_step(a_top, a_bottom, b, ks * kStep, q, exact, acc0);
        // Accumulator ownership: (g, 2q), (g, 2q+1), (g+8, 2q), (g+8, 2q+1).
        float* r0 = red + s * red_stride + (m0 + g) * ldr + n0 + 2 * q;
        float* r1 = r0 + 8 * ldr;
        if (first) {
            r0[0] = acc0[0] + acc1[0];
            r0[1] = acc0[1] + acc1[1];
            r1[0] = acc0[2] + acc1[2];
            r1[1] = acc0[3] + acc1[3];
        } else {
            r0[0] += acc0[0] + acc1[0];
            r0[1] += acc0[1] + acc1[1];
            r1[0] += acc0[2] + acc1[2];
            r1[1] += acc0[3] + acc1[3];
        }
    }
}

// Sum of the ksplit partial results of output element (m, n).
__device__ __forceinline__ float reduced(const float* red, int ldr, int mpad, int ksplit, int m,
                                         int n) {
    float sum = 0.0f;
    for (int s = 0; s < ksplit; ++s) sum += red[(s * mpad + m) * ldr + n];
    return sum;
}

// dst[r][kk] = src[r][k_begin + kk] for r < rows, kk < k_count rounded up to the mma K,
// zero past k_total: zero padding on both operands keeps garbage (even NaN) out of sums.
template <typename T>
__device__ void stage_rows(const T* src, size_t src_ld, int rows, int k_begin, int k_count,
                           int k_total, T* dst, int ldd) {
    constexpr int kStep = MmaStep<T>::value;
    const int k_padded = (k_count + kStep - 1) / kStep * kStep;
    const int n = rows * k_padded;
    for (int i = threadIdx.x; i < n; i += kThreads) {
        const int r = i / k_padded;
        const int kk = i - r * k_padded;
        const int k = k_begin + kk;
        dst[r * ldd + kk] = k < k_total ? __ldcg(src + r * src_ld + k) : zero<T>();
    }
}

// The recurrent product of one step, chunk by chunk over K:
//   red = resident (rows x K) . act^T    when weights_first (forward, C[row][batch])
//   red = act . resident^T (batch x rows) otherwise           (backward, C[batch][row])
// act is the batch x K activation matrix in global memory with row stride act_ld.
// Ends with a block barrier, so red is ready to read.
template <typename T>
__device__ void recurrent_product(const T* resident, int ldw, int rows, const T* act,
                                  size_t act_ld, int batch, int k_total, T* stage, int lds,
                                  int chunk, float* red, int ldr, int ksplit, bool weights_first,
                                  bool exact) {
    for (int kc = 0; kc < k_total; kc += chunk) {
        const int k_count = min(chunk, k_total - kc);
        stage_rows(act, act_ld, batch, kc, k_count, k_total, stage, lds);
        __syncthreads();
        if (weights_first) {
            accumulate_tiles(resident + kc, ldw, rows, stage, lds, batch, k_count, red, ldr,
                             ksplit, kc == 0, exact);
        } else {
            accumulate_tiles(stage, lds, batch, resident + kc, ldw, rows, k_count, red, ldr,
                             ksplit, kc == 0, exact);
        }
        __syncthreads();
    }
}

// Per-block constants of a launch, read from the kernel arguments.
struct Slice {
    int u0;      // first hidden unit of this block
    int units;   // hidden units this block owns (the last block may own fewer than hs)
};

__device__ __forceinline__ Slice block_slice(int hs, int hidden) {
    const int u0 = blockIdx.x * hs;
    return Slice{u0, min(hs, hidden - u0)};
}

// Forward resident slice: local row r = q * hs + j holds W_hh row q * H + u0 + j (gate q of
// the block's unit j), K = H columns zero-padded to the mma K; rows of missing units are zero.
template <typename T>
__device__ void load_weight_rows(const T* w_hh, int gates, int hidden, int hs, Slice slice,
                                 T* dst, int ldw) {
    constexpr int kStep = MmaStep<T>::value;
    const int k_padded = (hidden + kStep - 1) / kStep * kStep;
    const int n = gates * hs * k_padded;
    for (int i = threadIdx.x; i < n; i += kThreads) {
        const int r = i / k_padded;
        const int k = i - r * k_padded;
        const int q = r / hs;
        const int j = r - q * hs;
        const bool real = j < slice.units && k < hidden;
        dst[r * ldw + k] =
            real ? w_hh[static_cast<size_t>(q * hidden + slice.u0 + j) * hidden + k] : zero<T>();
    }
}

// Backward resident slice: row j holds column u0 + j of W_hh (length K = G * H), so that
// dh_{t-1}[:, u0 + j] = dG_t . row j.
template <typename T>
__device__ void load_weight_columns(const T* w_hh, int gates, int hidden, int hs, Slice slice,
                                    T* dst, int ldw) {
    constexpr int kStep = MmaStep<T>::value;
    const int k_total = gates * hidden;
    const int k_padded = (k_total + kStep - 1) / kStep * kStep;
    const int n = hs * k_padded;
    for (int i = threadIdx.x; i < n; i += kThreads) {
        const int j = i / k_padded;
        const int k = i - j * k_padded;
        const bool real = j < slice.units && k < k_total;
        dst[j * ldw + k] =
            real ? w_hh[static_cast<size_t>(k) * hidden + slice.u0 + j] : zero<T>();
    }
}

// Element i of a block's loop over its (unit, batch row) pairs, i < units * batch, at step
// t: unit j of the block (hidden unit u = u0 + j) in batch row b, and its index in each
// layout of a cell with `gates` gate blocks:
//   local     j * batch + b in the block's hs x B float states in shared memory
//   e         (t, b, u) of a [T][B][H] array; in a [T+1][B][H] one, row t (+ B * H: row t+1)
//   gate(q)   gate block q of unit u at step t in a [T][B][gates*H] array
struct UnitElement {
    int j, b, u, local, hidden;
    size_t e, row;
    __device__ __forceinline__ size_t gate(int q) const {
        return row + static_cast<size_t>(q) * hidden + u;
    }
};

__device__ __forceinline__ UnitElement unit_element(int i, Slice slice, int t, int batch,
                                                    int hidden, int gates) {
    UnitElement s;
    s.j = i % slice.units;
    s.b = i / slice.units;
    s.u = slice.u0 + s.j;
    s.local = s.j * batch + s.b;
    s.hidden = hidden;
    const size_t t_b = static_cast<size_t>(t) * batch + s.b;
    s.e = t_b * hidden + s.u;
    s.row = t_b * gates * hidden;
    return s;
}

// state[j * batch + b] = src[b][u0 + j] as float for the block's units (src is (B, H)).
template <typename T>
__device__ void load_state(const T* src, int batch, int hidden, Slice slice, float* state) {
    for (int i = threadIdx.x; i < slice.units * batch; i += kThreads) {
        const UnitElement s = unit_element(i, slice, 0, batch, hidden, 1);
        state[s.local] = load(src, s.e);
    }
}

// dst[b][u0 + j] = state[j * batch + b], the inverse of load_state.
template <typename T>
__device__ void store_state(const float* state, int batch, int hidden, Slice slice, T* dst) {
    for (int i = threadIdx.x; i < slice.units * batch; i += kThreads) {
        const UnitElement s = unit_element(i, slice, 0, batch, hidden, 1);
        store(dst, s.e, state[s.local]);
    }
}

// The end of a backward step: dL/dh_{t-1} of the block's units is the product just reduced
// into red (dG_t W_hh, batch rows by the block's units) plus `direct`, the terms that do not
// pass through W_hh. Ends with a block barrier, so dh_state is ready for step t - 1.
__device__ void finish_state_gradient(const float* red, int ldr, int mpad, int ksplit,
                                      Slice slice, int batch, const float* direct,
                                      float* dh_state) {
    for (int i = threadIdx.x; i < slice.units * batch; i += kThreads) {
        const UnitElement s = unit_element(i, slice, 0, batch, 0, 1);
        dh_state[s.local] = reduced(red, ldr, mpad, ksplit, s.b, s.j) + direct[s.local];
    }
    __syncthreads();
}

// The trailing int arguments of every persistent kernel: the sizes, then the layout the host
// planner chose (PersistentPlan.layout_args), then whether TF32 is allowed.
struct Launch {
    int steps, batch, hidden;
    int hs;            // hidden units per block
    int ldw;           // row stride of the resident weights (elements)
    int chunk;         // K-chunk of the staged activations (elements)
    int lds;           // row stride of the staged chunk (elements)
    int ldr;           // row stride of the partial tiles (floats)
    int ksplit;        // K-slices per output tile
    int stage_offset;  // byte offsets of the shared-memory regions
    int red_offset;
    int state_offset;
    int allow_tf32;
};

// Every persistent kernel ends its parameter list with these (the host passes T, B, H, then
// PersistentPlan.layout_args(), then allow_tf32) and hands them to its loop as a Launch.
#define CUDA_RNN_PERSISTENT_LAUNCH_PARAMS                                                        \
    int steps, int batch, int hidden, int hs, int ldw, int chunk, int lds, int ldr, int ksplit, \
        int stage_offset, int red_offset, int state_offset, int allow_tf32
#define CUDA_RNN_PERSISTENT_LAUNCH                                                              \
    cuda_rnn::persistent::Launch {                                                              \
        steps, batch, hidden, hs, ldw, chunk, lds, ldr, ksplit, stage_offset, red_offset,       \
            state_offset, allow_tf32                                                            \
    }

// The dynamic shared memory carved along the host's offsets.
template <typename T> struct SharedRegions {
    T* resident;
    T* stage;
    float* red;
    float* state;
};

template <typename T> __device__ __forceinline__ SharedRegions<T> carve(const Launch& l) {
    unsigned char* base = cuda_rnn_persistent_smem;
    return SharedRegions<T>{reinterpret_cast<T*>(base),
                            reinterpret_cast<T*>(base + l.stage_offset),
                            reinterpret_cast<float*>(base + l.red_offset),
                            reinterpret_cast<float*>(base + l.state_offset)};
}

// The arrays every cell's forward kernel takes; a policy's Forward adds its own.
template <typename T> struct ForwardArrays {
    using Storage = T;
    const acc_t<T>* __restrict__ xp;
    const T* __restrict__ w_hh;
    const int* __restrict__ lengths;
    T* hseq;
    T* y;
};

// The arrays every cell's backward kernel takes; a policy's Backward adds its own.
template <typename T> struct BackwardArrays {
    using Storage = T;
    const T* __restrict__ w_hh;
    const int* __restrict__ lengths;
    const T* __restrict__ dy;
    const acc_t<T>* dh_n;
    acc_t<T>* dh0;
};

// What a policy's forward_step returns: h' (written to y on real steps) and the h_t to store.
struct ForwardOut {
    float h;
    float h_keep;
};

// Every step of the forward pass of cell policy P, in one launch.
template <typename P>
__device__ void forward_loop(const typename P::Forward& io, const Launch& l) {
    using T = typename P::Forward::Storage;
    constexpr int G = P::kGates;
    const int batch = l.batch, hidden = l.hidden;
    const SharedRegions<T> sh = carve<T>(l);
    const Slice slice = block_slice(l.hs, hidden);
    const int rows = G * l.hs;
    const int mpad = (rows + 15) / 16 * 16;
    const size_t bh = static_cast<size_t>(batch) * hidden;
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();

    load_weight_rows(io.w_hh, G, hidden, l.hs, slice, sh.resident, l.ldw);
    load_state(P::forward_state(io), batch, hidden, slice, sh.state);
    __syncthreads();

    for (int t = 0; t < l.steps; ++t) {
        recurrent_product(sh.resident, l.ldw, rows, io.hseq + t * bh, hidden, batch, hidden,
                          sh.stage, l.lds, l.chunk, sh.red, l.ldr, l.ksplit, true,
                          !l.allow_tf32);
        for (int i = threadIdx.x; i < slice.units * batch; i += kThreads) {
            const UnitElement s = unit_element(i, slice, t, batch, hidden, G);
            float rec[G];
#pragma unroll
            for (int q = 0; q < G; ++q) {
                rec[q] = reduced(sh.red, l.ldr, mpad, l.ksplit, q * l.hs + s.j, s.b);
            }
            const bool real = t < io.lengths[s.b];
            const ForwardOut out = P::forward_step(io, s, s.e + bh, rec, real, sh.state[s.local]);
            store(io.hseq, s.e + bh, out.h_keep);
            store(io.y, s.e, real ? out.h : 0.0f);
        }
        grid.sync();
    }
}

// Every step of the backward pass of cell policy P, in reverse time, in one launch.
template <typename P>
__device__ void backward_loop(const typename P::Backward& io, const Launch& l) {
    using T = typename P::Backward::Storage;
    constexpr int G = P::kGates;
    const int batch = l.batch, hidden = l.hidden;
    const SharedRegions<T> sh = carve<T>(l);
    const Slice slice = block_slice(l.hs, hidden);
    const int mpad = (batch + 15) / 16 * 16;
    const int per_state = l.hs * batch;
    float* dh_state = sh.state;              // dL/dh_t of the block's units
    float* direct = sh.state + per_state;    // the terms of dL/dh_{t-1} outside W_hh
    float* own = sh.state + 2 * per_state;   // the cell's own backward states
    const size_t bh = static_cast<size_t>(batch) * hidden;
    const T* d_rec = P::recurrent_gradient(io);
    cooperative_groups::grid_group grid = cooperative_groups::this_grid();

    load_weight_columns(io.w_hh, G, hidden, l.hs, slice, sh.resident, l.ldw);
    load_state(io.dh_n, batch, hidden, slice, dh_state);
    P::begin_backward(io, batch, hidden, slice, own);
    __syncthreads();

    for (int t = l.steps - 1; t >= 0; --t) {
        for (int i = threadIdx.x; i < slice.units * batch; i += kThreads) {
            const UnitElement s = unit_element(i, slice, t, batch, hidden, G);
            const bool real = t < io.lengths[s.b];
            const float dh_in = dh_state[s.local];
            const float dy_v = load(io.dy, s.e);
            // Past a sequence's end the step is a copy: dh_t passes straight to t - 1.
            direct[s.local] = P::backward_step(io, s, real ? dh_in + dy_v : 0.0f, real, own) +
                              (real ? 0.0f : dh_in);
        }
        grid.sync();
        recurrent_product(sh.resident, l.ldw, l.hs, d_rec + t * bh * G, G * hidden, batch,
                          G * hidden, sh.stage, l.lds, l.chunk, sh.red, l.ldr, l.ksplit, false,
                          !l.allow_tf32);
        finish_state_gradient(sh.red, l.ldr, mpad, l.ksplit, slice, batch, direct, dh_state);
    }
    store_state(dh_state, batch, hidden, slice, io.dh0);
    P::end_backward(io, batch, hidden, slice, own);
}

}  // namespace persistent
}  // namespace cuda_rnn
