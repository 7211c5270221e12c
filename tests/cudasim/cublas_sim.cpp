// cublas_sim.cpp: the entry points of libcublas that cuda_rnn calls through ctypes, for the
// CPU simulator. A handle remembers its stream and workspace; cublasGemmEx forwards every
// argument, with the handle's stream, to the NumPy model in cupy_backends/cuda/libs/cublas.py
// (registered with cuda_sim_set_gemm), which runs it or records it into a capturing stream.
#include <cstddef>

namespace {

struct Handle {
    void* stream = nullptr;
    void* workspace = nullptr;
    std::size_t workspace_bytes = 0;
};

using GemmModel = int (*)(void* stream, std::size_t workspace_bytes, int transa, int transb,
                          int m, int n, int k, const void* alpha, const void* a, int a_type,
                          int lda, const void* b, int b_type, int ldb, const void* beta, void* c,
                          int c_type, int ldc, int compute, int algo);
GemmModel gemm_model = nullptr;

}  // namespace

extern "C" {

void cuda_sim_set_gemm(GemmModel model) { gemm_model = model; }

int cublasCreate_v2(Handle** handle) {
    *handle = new Handle();
    return 0;
}

int cublasDestroy_v2(Handle* handle) {
    delete handle;
    return 0;
}

int cublasSetStream_v2(Handle* handle, void* stream) {
    handle->stream = stream;
    return 0;
}

int cublasSetWorkspace_v2(Handle* handle, void* workspace, std::size_t bytes) {
    handle->workspace = workspace;
    handle->workspace_bytes = bytes;
    return 0;
}

int cublasGemmEx(Handle* handle, int transa, int transb, int m, int n, int k, const void* alpha,
                 const void* a, int a_type, int lda, const void* b, int b_type, int ldb,
                 const void* beta, void* c, int c_type, int ldc, int compute, int algo) {
    if (gemm_model == nullptr) return 1;  // CUBLAS_STATUS_NOT_INITIALIZED
    return gemm_model(handle->stream, handle->workspace_bytes, transa, transb, m, n, k, alpha, a,
                      a_type, lda, b, b_type, ldb, beta, c, c_type, ldc, compute, algo);
}

}  // extern "C"
