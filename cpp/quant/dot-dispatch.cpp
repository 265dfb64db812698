// dot-dispatch.cpp — the public quant.h entry points for the Q8K / f32 dots: argument checks
// and the run-time choice of kernel table (AVX-512 VNNI > AVX2 > scalar, by
// __builtin_cpu_supports). All tables return identical bits, so the choice only affects speed;
// set_simd_level lets tests force each available level.
#include <atomic>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "quant/dot-kernels.h"
#include "quant/dot-tiles.h"
#include "quant/quant.h"
#include "runtime/errors.h"

namespace qwen3moe {

namespace {

// clang 14's __builtin_cpu_supports does not know "f16c": read CPUID leaf 1 (ECX bit 29) there.
bool cpu_has_f16c() {
#if defined(__clang__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
#else
    return __builtin_cpu_supports("f16c");
#endif
}

bool cpu_has_avx2() {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

bool cpu_has_avx512vnni() {
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni");
}

// AMX-TILE + AMX-INT8 in CPUID, the tile state enabled in XCR0 (bits 17, 18), and the Linux
// per-process permission for the tile data (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); asked once.
bool cpu_os_amx() {
    static const bool ok = [] {
        if (!cpu_has_avx512vnni()) return false;
        unsigned a = 0, b = 0, c = 0, d = 0;
        if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
        if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return false;  // OSXSAVE
        uint32_t lo = 0, hi = 0;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        if ((lo & (3u << 17)) != (3u << 17)) return false;
#if defined(__linux__)
        return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */) == 0;
#else
        return false;
#endif
    }();
    return ok;
}

const DotKernels* best_kernels() {
    if (cpu_has_avx512vnni()) return &kDotKernelsAvx512;
    if (cpu_has_avx2()) return &kDotKernelsAvx2;
    return &kDotKernelsRef;
}

std::atomic<const DotKernels*> g_kernels{nullptr};

const DotKernels& kernels() {
    const DotKernels* k = g_kernels.load(std::memory_order_acquire);
    if (!k) {
        k = best_kernels();
        g_kernels.store(k, std::memory_order_release);
    }
    return *k;
}

void check_q8k_dot(const char* fn, uint32_t type, int64_t n) {
    if (!type_has_q8k_dot(type))
        throw UnsupportedType(std::string(fn) + ": no Q8K dot for tensor type " + ggml_type_name(type));
    if (n < 0 || n % QK_K != 0)
        throw std::invalid_argument(std::string(fn) + ": row length " + std::to_string(n) +
                                    " is not a multiple of 256");
}

}  // namespace

void quantize_row_q8k(const float* x, block_q8k* y, int64_t n) {
    if (n < 0 || n % QK_K != 0)
        throw std::invalid_argument("quantize_row_q8k: length " + std::to_string(n) + " is not a multiple of 256");
    kernels().quantize_q8k(x, y, n);
}

bool type_has_q8k_dot(uint32_t type) {
    switch (type) {
        case GGML_TYPE_Q4_0:
        case GGML_TYPE_Q8_0:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q5_K:
        case GGML_TYPE_Q6_K:
            return true;
        default:
            return false;
    }
}

float vec_dot_q8k(uint32_t type, const void* w_row, const block_q8k* a, int64_t n) {
    check_q8k_dot("vec_dot_q8k", type, n);
    float out = 0.0f;
    kernels().dot_q8k(type, w_row, a, 0, 1, n, &out, 0);
    return out;
}

void vec_dot_q8k_multi(uint32_t type, const void* w_row, const block_q8k* a, int64_t a_stride_blocks,
                       int n_tok, int64_t n, float* out, int64_t out_stride) {
    check_q8k_dot("vec_dot_q8k_multi", type, n);
    if (n_tok < 0) throw std::invalid_argument("vec_dot_q8k_multi: negative token count");
    if (n_tok == 0) return;
    kernels().dot_q8k(type, w_row, a, a_stride_blocks, n_tok, n, out, out_stride);
}

void vec_dot_q8k_rows(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const block_q8k* a,
                      int64_t n, float* out, int64_t prefetch) {
    check_q8k_dot("vec_dot_q8k_rows", type, n);
    if (n_rows < 0) throw std::invalid_argument("vec_dot_q8k_rows: negative row count");
    if (n_rows == 0) return;
    kernels().dot_q8k_rows1(type, w, row_bytes, n_rows, a, n, out, prefetch < 0 ? 0 : prefetch);
}

bool q8k_tiles_available() { return &kernels() == &kDotKernelsAvx512 && cpu_os_amx(); }

bool q8k_tiles_supported(uint32_t type, int64_t n) {
    return (type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K) && n > 0 && n % QK_K == 0 &&
           n / QK_K <= kQ8kTileMaxBlocks && q8k_tiles_available();
}

void q8k_tiles_resize(int n_tok, int64_t nb, Q8kTiles* out) {
    if (n_tok < 0 || nb < 0) throw std::invalid_argument("q8k_tiles_resize: negative size");
    out->n_tok = n_tok;
    out->nb = nb;
    out->data.assign((size_t)((n_tok + 15) / 16) * (size_t)nb * kQ8kTileItemBytes, 0);
}

int64_t q8k_tiles_items(const Q8kTiles& t) { return (int64_t)((t.n_tok + 15) / 16) * t.nb; }

void q8k_tiles_fill(const block_q8k* a, int64_t a_stride_blocks, Q8kTiles* out, int64_t i0, int64_t i1) {
    const int64_t nb = out->nb;
    for (int64_t i = i0; i < i1; ++i) {
        const int tt = (int)(i / nb);
        const int64_t b = i % nb;
        const int nt = out->n_tok - 16 * tt < 16 ? out->n_tok - 16 * tt : 16;
        uint8_t* item = out->data.data() + (size_t)i * kQ8kTileItemBytes;
        for (int t = 0; t < nt; ++t) {
            const block_q8k& q = a[(int64_t)(16 * tt + t) * a_stride_blocks + b];
            for (int c = 0; c < 4; ++c)
                for (int k = 0; k < 16; ++k) std::memcpy(item + c * 1024 + k * 64 + 4 * t, q.qs + 64 * c + 4 * k, 4);
            std::memcpy(item + kQ8kTileDaOffset + 4 * t, &q.d, 4);
            for (int i = 0; i < 4; ++i) {
                const int16_t s0 = (int16_t)(q.bsums[4 * i] + q.bsums[4 * i + 1]);
                const int16_t s1 = (int16_t)(q.bsums[4 * i + 2] + q.bsums[4 * i + 3]);
                const uint32_t pair = (uint32_t)(uint16_t)s0 | ((uint32_t)(uint16_t)s1 << 16);
                std::memcpy(item + kQ8kTileBsOffset + 4 * (16 * i + t), &pair, 4);
            }
        }
    }
}

void q8k_tiles_prepare(const block_q8k* a, int64_t a_stride_blocks, int n_tok, int64_t nb, Q8kTiles* out) {
    q8k_tiles_resize(n_tok, nb, out);
    q8k_tiles_fill(a, a_stride_blocks, out, 0, q8k_tiles_items(*out));
}

void vec_dot_q8k_tiles(uint32_t type, const uint8_t* w, size_t row_bytes, int64_t n_rows, const Q8kTiles& a,
                       int64_t n, float* out, int64_t out_stride) {
    if (!q8k_tiles_supported(type, n))
        throw std::invalid_argument(std::string("vec_dot_q8k_tiles: no AMX tile kernel for ") + ggml_type_name(type) +
                                    " rows of " + std::to_string(n) + " values on this machine");
    if (a.nb != n / QK_K || a.data.size() != (size_t)((a.n_tok + 15) / 16) * (size_t)a.nb * kQ8kTileItemBytes)
        throw std::invalid_argument("vec_dot_q8k_tiles: the activation tiles do not match the row length");
    if (n_rows < 0) throw std::invalid_argument("vec_dot_q8k_tiles: negative row count");
    if (n_rows == 0 || a.n_tok == 0) return;
    if (!q8k_tiles_dot_amx(type, w, row_bytes, n_rows, a.data.data(), a.n_tok, a.nb, out, out_stride))
        throw std::bad_alloc();
}

float canon_dot(const float* a, const float* b, int64_t n) {
    if (n < 0) throw std::invalid_argument("canon_dot: negative length");
    return kernels().canon_dot(a, b, n);
}

void canon_axpy(float a, const float* x, float* y, int64_t n) {
    if (n < 0) throw std::invalid_argument("canon_axpy: negative length");
    kernels().axpy(a, x, y, n);
}

void canon_swiglu(const float* g, const float* u, float* s, int64_t n) {
    if (n < 0) throw std::invalid_argument("canon_swiglu: negative length");
    kernels().swiglu(g, u, s, n);
}

void canon_f16_to_f32_row(const uint16_t* h, float* y, int64_t n) {
    if (n < 0) throw std::invalid_argument("canon_f16_to_f32_row: negative length");
    kernels().f16_to_f32(h, y, n);
}

float vec_dot_f32act(uint32_t type, const void* w_row, const float* x, int64_t n, float* scratch) {
    if (type == GGML_TYPE_F32) return canon_dot(static_cast<const float*>(w_row), x, n);
    dequantize_row(type, w_row, scratch, n);  // validates type and n
    return kernels().canon_dot(scratch, x, n);
}

const char* simd_level() { return kernels().name; }

bool simd_level_available(const char* level) {
    const std::string s = level ? level : "";
    if (s == "auto" || s == "scalar") return true;
    if (s == "avx2") return cpu_has_avx2();
    if (s == "avx512vnni") return cpu_has_avx512vnni();
    return false;
}

void set_simd_level(const char* level) {
    const std::string s = level ? level : "";
    const DotKernels* k = nullptr;
    if (s == "auto") {
        k = best_kernels();
    } else if (s == "scalar") {
        k = &kDotKernelsRef;
    } else if (s == "avx2") {
        if (!cpu_has_avx2()) throw std::invalid_argument("set_simd_level: this CPU lacks AVX2/FMA/F16C");
        k = &kDotKernelsAvx2;
    } else if (s == "avx512vnni") {
        if (!cpu_has_avx512vnni())
            throw std::invalid_argument("set_simd_level: this CPU lacks AVX-512 (F/BW/VL/DQ/VNNI)");
        k = &kDotKernelsAvx512;
    } else {
        throw std::invalid_argument("set_simd_level: unknown level '" + s +
                                    "' (expected auto, scalar, avx2 or avx512vnni)");
    }
    g_kernels.store(k, std::memory_order_release);
}

}  // namespace qwen3moe
