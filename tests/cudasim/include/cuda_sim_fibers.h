// cuda_sim_fibers.h: cooperative launches on the CPU (tests/cudasim): every CUDA thread of the
// grid is a fiber, so threads can wait for each other at __syncthreads, at a warp-wide
// mma.sync and at a cooperative-groups grid sync, and the tensor-core instructions the
// persistent kernels use (cvt.rna.tf32.f32, mma.sync m16n8k8 tf32 and m16n8k16 bf16) are
// computed from the fragment layouts of the PTX ISA.
//
// Schedule. Blocks meet only at grid syncs, so a grid phase (the code between two grid syncs)
// runs one block at a time: every thread of the block runs until it waits, the last thread to
// reach a barrier (or the last lane to reach an mma) completes it and goes on, and the block
// is done with the phase when all its threads wait at the grid sync or have returned. Blocks
// run in increasing order in even phases and in decreasing order in odd ones, and the threads
// waiting to run are swept alternately up and down, so a thread (or block) that reads what
// another writes without a barrier between them sees the write in one order but not in the
// other.
//
// Shared memory. The module's `extern __shared__` array is one host array; each block keeps
// its own copy, swapped in while the block runs. A block starts with every byte 0xFF (NaN in
// float and bfloat16), and the bytes past the launch's dynamic size hold a guard pattern that
// must survive the block's run.
//
// What ends a launch with an error (read by cuda_sim_error): a barrier that not every thread
// of the block reaches, an mma that not every lane of the warp reaches or that lanes reach with
// different shapes, a grid sync not reached by every thread, a write past the dynamic shared
// memory, and any of these waits in a kernel that is not launched cooperatively (it runs
// thread after thread, cuda_sim.h).
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace cuda_sim {

// Dynamic shared memory of one block, at most (H100: 227 KiB opt-in), and the guard after it.
// The module's `extern __shared__` array is defined with this size by the simulator's
// RawModule (tests/cudasim/cupy/_raw.py).
constexpr std::size_t kSharedCapacity = 227 * 1024;
constexpr std::size_t kSharedGuard = 256;
constexpr unsigned char kGuardByte = 0xA5;
constexpr std::size_t kFiberStack = 64 * 1024;

enum class Wait { none, block_barrier, mma, grid_sync, returned };

enum class MmaShape { m16n8k8_tf32, m16n8k16_bf16 };

struct MmaOperands {
    MmaShape shape;
    float* d;
    const std::uint32_t* a;
    const std::uint32_t* b;
};

struct Fiber {
    ucontext_t start;
    jmp_buf resume;
    std::unique_ptr<char[]> stack;
    unsigned block = 0;
    unsigned thread = 0;
    bool started = false;
    Wait wait = Wait::none;
    MmaOperands mma{};
};

// The state of the one launch in progress (launches are synchronous: the simulator has one
// host thread).
struct Launch {
    void (*body)(void*) = nullptr;
    void* body_arg = nullptr;
    unsigned blocks = 0;
    unsigned threads = 0;
    std::vector<Fiber> fibers;
    std::vector<unsigned> block_arrivals;  // per block, threads waiting at __syncthreads
    std::vector<unsigned> warp_arrivals;   // per (block, warp), lanes waiting at an mma
    jmp_buf scheduler;
    Fiber* current = nullptr;
    std::string error;
};

inline Launch* active_launch = nullptr;
// Message of the last failed launch of this library.
inline std::string last_error;

inline void fail(const std::string& message) {
    if (active_launch != nullptr && active_launch->error.empty()) active_launch->error = message;
    if (active_launch == nullptr && last_error.empty()) last_error = message;
}

inline void set_indices(const Fiber& f) {
    const unsigned x = gridDim.x, y = gridDim.y;
    blockIdx = {f.block % x, (f.block / x) % y, f.block / (x * y)};
    const unsigned bx = blockDim.x, by = blockDim.y;
    threadIdx = {f.thread % bx, (f.thread / bx) % by, f.thread / (bx * by)};
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
inline void suspend(Fiber& f) {
    if (_setjmp(f.resume) == 0) _longjmp(active_launch->scheduler, 1);
}

inline void fiber_main() {
    Launch& launch = *active_launch;
    Fiber& f = *launch.current;
    launch.body(launch.body_arg);
    f.wait = Wait::returned;
    _longjmp(launch.scheduler, 1);
}

inline void resume(Launch& launch, Fiber& f) {
    launch.current = &f;
    set_indices(f);
    if (_setjmp(launch.scheduler) == 0) {
        if (!f.started) {
            f.started = true;
            setcontext(&f.start);
        }
        _longjmp(f.resume, 1);
    }
}

// Element (row, col) positions of each lane's fragments, from the PTX ISA tables
// ("Matrix Fragments for mma.m16n8k8" .tf32 and "for mma.m16n8k16 with floating point type"
// .bf16), with groupID = lane >> 2 and threadID_in_group = lane % 4.
inline void complete_mma(Fiber* lanes) {
    const MmaShape shape = lanes[0].mma.shape;
    for (int l = 1; l < 32; ++l) {
        if (lanes[l].mma.shape != shape) {
            fail("mma.sync: lanes of one warp issued different mma shapes");
            return;
        }
    }
    const int k_dim = shape == MmaShape::m16n8k8_tf32 ? 8 : 16;
    double a[16][16] = {};
    double b[16][8] = {};
    double c[16][8] = {};
    for (int lane = 0; lane < 32; ++lane) {
        const int group = lane >> 2;
        const int tig = lane % 4;
        const MmaOperands& m = lanes[lane].mma;
        if (shape == MmaShape::m16n8k8_tf32) {
            // A: a0 (g, t), a1 (g+8, t), a2 (g, t+4), a3 (g+8, t+4); B: b0 (t, g), b1 (t+4, g).
            // The tensor core reads the top 19 bits of each .tf32 register.
            auto value = [](std::uint32_t r) {
                const std::uint32_t top = r & 0xFFFFE000u;
                float f;
                std::memcpy(&f, &top, 4);
                return static_cast<double>(f);
            };
            for (int i = 0; i < 4; ++i) {
                const int row = group + ((i == 1 || i == 3) ? 8 : 0);
                const int col = tig + (i >= 2 ? 4 : 0);
                a[row][col] = value(m.a[i]);
            }
            b[tig][group] = value(m.b[0]);
            b[tig + 4][group] = value(m.b[1]);
        } else {
            // A element i (0..7) in register i / 2, low half first: row g for i in {0,1,4,5}
            // else g+8; col 2t + (i & 1), plus 8 for i >= 4. B element i (0..3) in register
            // i / 2: row 2t + (i & 1), plus 8 for i >= 2; col g.
            auto half = [](std::uint32_t r, int which) {
                __nv_bfloat16 h;
                h.bits = static_cast<std::uint16_t>(which == 0 ? r & 0xFFFFu : r >> 16);
                return static_cast<double>(__bfloat162float(h));
            };
            for (int i = 0; i < 8; ++i) {
                const int row = group + ((i < 2 || (i >= 4 && i < 6)) ? 0 : 8);
                const int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
                a[row][col] = half(m.a[i / 2], i % 2);
            }
            for (int i = 0; i < 4; ++i) {
                b[tig * 2 + (i & 1) + (i >= 2 ? 8 : 0)][group] = half(m.b[i / 2], i % 2);
            }
        }
        // C and D: c0 (g, 2t), c1 (g, 2t+1), c2 (g+8, 2t), c3 (g+8, 2t+1).
        for (int i = 0; i < 4; ++i) c[group + (i >= 2 ? 8 : 0)][tig * 2 + (i & 1)] = m.d[i];
    }
    for (int lane = 0; lane < 32; ++lane) {
        const int group = lane >> 2;
        const int tig = lane % 4;
        for (int i = 0; i < 4; ++i) {
            const int row = group + (i >= 2 ? 8 : 0);
            const int col = tig * 2 + (i & 1);
            double sum = c[row][col];
            for (int k = 0; k < k_dim; ++k) sum += a[row][k] * b[k][col];
            lanes[lane].mma.d[i] = static_cast<float>(sum);
        }
    }
}

inline Fiber* current_fiber(const char* what) {
    if (active_launch == nullptr || active_launch->current == nullptr) {
        fail(std::string(what) + " in a kernel of a module built without "
             "enable_cooperative_groups: the simulator runs such kernels one thread after "
             "another, so threads cannot wait for each other");
        return nullptr;
    }
    return active_launch->current;
}

// Fiber f arrives at a wait that the `group` fibers from `members` on share: the last to
// arrive runs `complete`, releases them all and goes on; the others suspend until then.
template <typename Complete>
void arrive(Fiber& f, unsigned& arrived, Fiber* members, unsigned group, Wait wait,
            Complete complete) {
    if (++arrived == group) {
        arrived = 0;
        complete();
        for (unsigned i = 0; i < group; ++i) members[i].wait = Wait::none;
        return;
    }
    f.wait = wait;
    suspend(f);
}

inline void mma_sync(MmaShape shape, float* d, const std::uint32_t* a, const std::uint32_t* b) {
    Fiber* f = current_fiber("mma.sync");
    if (f == nullptr) return;
    Launch& launch = *active_launch;
    const unsigned warp = f->thread / 32;
    const unsigned warps = (launch.threads + 31) / 32;
    if (launch.threads % 32 != 0) {
        fail("mma.sync: the block size is not a multiple of 32, so a warp is partial");
        return;
    }
    f->mma = MmaOperands{shape, d, a, b};
    Fiber* lanes = &launch.fibers[f->block * launch.threads + warp * 32];
    arrive(*f, launch.warp_arrivals[f->block * warps + warp], lanes, 32, Wait::mma,
           [lanes] { complete_mma(lanes); });
}

inline void block_barrier() {
    Fiber* f = current_fiber("__syncthreads");
    if (f == nullptr) return;
    Launch& launch = *active_launch;
    arrive(*f, launch.block_arrivals[f->block], &launch.fibers[f->block * launch.threads],
           launch.threads, Wait::block_barrier, [] {});
}

inline void grid_sync() {
    Fiber* f = current_fiber("grid.sync");
    if (f == nullptr) return;
    f->wait = Wait::grid_sync;
    suspend(*f);
}

inline const char* wait_name(Wait w) {
    switch (w) {
        case Wait::none: return "running";
        case Wait::block_barrier: return "__syncthreads";
        case Wait::mma: return "mma.sync";
        case Wait::grid_sync: return "grid.sync";
        case Wait::returned: return "return";
    }
    return "?";
}

// Runs block b until every thread waits at the grid sync or has returned. Each sweep over
// the runnable threads goes the other way round from the one before.
inline void run_block_phase(Launch& launch, unsigned b, unsigned phase) {
    Fiber* threads = &launch.fibers[b * launch.threads];
    for (unsigned sweep = phase % 2;; ++sweep) {
        bool ran = false;
        for (unsigned i = 0; i < launch.threads && launch.error.empty(); ++i) {
            Fiber& f = threads[sweep % 2 == 0 ? i : launch.threads - 1 - i];
            if (f.wait == Wait::none) {
                resume(launch, f);
                ran = true;
            }
        }
        if (!launch.error.empty()) return;
        if (!ran) break;
    }
    unsigned counts[5] = {};
    for (unsigned t = 0; t < launch.threads; ++t) ++counts[static_cast<int>(threads[t].wait)];
    const unsigned stuck = counts[static_cast<int>(Wait::block_barrier)] +
                           counts[static_cast<int>(Wait::mma)];
    const unsigned at_grid = counts[static_cast<int>(Wait::grid_sync)];
    if (stuck == 0 && (at_grid == 0 || at_grid == launch.threads)) return;
    std::string message = "block " + std::to_string(b) + " cannot go on:";
    for (int w = 1; w < 5; ++w) {
        if (counts[w] == 0) continue;
        const Wait wait = static_cast<Wait>(w);
        message += " " + std::to_string(counts[w]) + " threads " +
                   (wait == Wait::returned ? "returned" : std::string("at ") + wait_name(wait)) +
                   ";";
    }
    fail(message + " every thread of a block must reach each __syncthreads and grid.sync, "
                   "and every lane of a warp each mma.sync");
}

template <typename Body>
int run_fibers(Body& body, const unsigned* grid, const unsigned* block, std::size_t shared_bytes,
               unsigned char* shared_memory) {
    if (shared_bytes > kSharedCapacity) {
        last_error = "dynamic shared memory of " + std::to_string(shared_bytes) +
                     " bytes is more than the " + std::to_string(kSharedCapacity) + " a block has";
        return 1;
    }
    Launch launch;
    launch.body = [](void* arg) { (*static_cast<Body*>(arg))(); };
    launch.body_arg = &body;
    launch.blocks = grid[0] * grid[1] * grid[2];
    launch.threads = block[0] * block[1] * block[2];
    launch.fibers = std::vector<Fiber>(static_cast<std::size_t>(launch.blocks) * launch.threads);
    launch.block_arrivals.assign(launch.blocks, 0);
    launch.warp_arrivals.assign(static_cast<std::size_t>(launch.blocks) *
                                    ((launch.threads + 31) / 32), 0);
    for (std::size_t i = 0; i < launch.fibers.size(); ++i) {
        Fiber& f = launch.fibers[i];
        f.block = static_cast<unsigned>(i / launch.threads);
        f.thread = static_cast<unsigned>(i % launch.threads);
        f.stack.reset(new char[kFiberStack]);
        getcontext(&f.start);
        f.start.uc_stack.ss_sp = f.stack.get();
        f.start.uc_stack.ss_size = kFiberStack;
        f.start.uc_link = nullptr;
        makecontext(&f.start, fiber_main, 0);
    }
    std::vector<std::vector<unsigned char>> shared(
        launch.blocks, std::vector<unsigned char>(shared_bytes, 0xFF));
    active_launch = &launch;
    for (unsigned phase = 0; launch.error.empty(); ++phase) {
        for (unsigned i = 0; i < launch.blocks && launch.error.empty(); ++i) {
            const unsigned b = phase % 2 == 0 ? i : launch.blocks - 1 - i;
            std::memcpy(shared_memory, shared[b].data(), shared_bytes);
            std::memset(shared_memory + shared_bytes, kGuardByte, kSharedGuard);
            run_block_phase(launch, b, phase);
            for (std::size_t k = 0; k < kSharedGuard && launch.error.empty(); ++k) {
                if (shared_memory[shared_bytes + k] != kGuardByte) {
                    fail("block " + std::to_string(b) + " wrote past its " +
                         std::to_string(shared_bytes) + " bytes of dynamic shared memory");
                }
            }
            std::memcpy(shared[b].data(), shared_memory, shared_bytes);
        }
        if (!launch.error.empty()) break;
        std::size_t returned = 0;
        for (const Fiber& f : launch.fibers) returned += f.wait == Wait::returned;
        if (returned == launch.fibers.size()) break;
        if (returned != 0) {
            fail("grid.sync: " + std::to_string(launch.fibers.size() - returned) + " threads "
                 "wait at it but " + std::to_string(returned) + " have returned");
            break;
        }
        for (Fiber& f : launch.fibers) f.wait = Wait::none;
    }
    active_launch = nullptr;
    last_error = launch.error;
    return launch.error.empty() ? 0 : 1;
}

inline std::uint32_t cvt_rna_tf32(float x) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if ((bits & 0x7F800000u) == 0x7F800000u) {
        return (bits & 0x007FFFFFu) != 0 ? 0x7FFFFFFFu : bits;  // NaN stays NaN, inf stays
    }
    // Round the magnitude to 10 mantissa bits, ties away from zero (.rna).
    return (bits + 0x1000u) & 0xFFFFE000u;
}

}  // namespace cuda_sim

inline void __syncthreads() { cuda_sim::block_barrier(); }

template <typename T> inline T __ldcg(const T* p) { return *p; }

inline float __uint_as_float(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
