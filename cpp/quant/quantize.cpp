// quantize.cpp — weight quantisers F32 -> F16, BF16, Q4_0, Q8_0, Q4_K, Q5_K, Q6_K.
//
// Used to write test models and for round-trip tests; not on the inference path. The output
// is valid GGUF data (any GGUF reader dequantises it), but the algorithms are our own and
// need not match llama.cpp's quantisers bit for bit:
//  * F16: canon_f32_to_f16 (round to nearest even, overflow -> inf). BF16: round to nearest
//    even on the upper 16 bits, NaN kept quiet (as ggml/gguf-py do).
//  * Q8_0: d = amax/(127 + t/2), t = 0..8, rounded to f16, the least-squares best kept;
//    q = round(x/d). Q4_0: d = (signed value of largest magnitude)/-(8 - t/4), t = 0..8,
//    rounded to f16, the best kept.
//  * Q4_K / Q5_K: per 32-value sub-block an affine fit x ~ s*q - m (q in 0..15 / 0..31,
//    m >= 0): candidate step sizes around (max - min)/nmax, each refitted by least squares,
//    then up to 3 rounds of reassigning q and refitting. The sub-block s and m are quantised to
//    6 bits against f16 super-scales d = max s/63, dmin = max m/63; the 3x3 neighbours of each
//    rounded (sc, m) pair are tried with q recomputed, the best kept.
//  * Q6_K: per 16-value sub-block a symmetric fit x ~ s*q (q in -32..31) with the same
//    candidate search; s is quantised to int8 against d = max|s|/127 (neighbours +-1 tried).
// Codes are rounded half away from zero (quantiser only; the canonical Q8K activation
// quantiser uses round-half-even). Scales are clamped to the finite f16 range, so inputs beyond
// it saturate; inputs are expected finite. Thread-safe (no shared state).
//
// Measured round-trip error (relative RMS ||dequantize(quantize(x)) - x|| / ||x||, x ~ N(0,1),
// 1024 x 1024 values): the bound in brackets is what the tests enforce.
//   F16 2.1e-4 [3e-4]   BF16 1.66e-3 [2.5e-3]   Q8_0 0.53% [0.6%]   Q6_K 1.69% [2%]
//   Q5_K 3.47% [4%]     Q4_K 7.0% [8%]          Q4_0 8.4% [10%]
// (Q8_0 at 0.53% is the per-block absmax floor: gguf-py's ggml-exact Q8_0 quantiser gives the
// same 0.535% on this data.) Speed: ~3.5 M values/s per core for the K-quants.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "quant/quant.h"
#include "runtime/errors.h"

namespace qwen3moe {

namespace {

constexpr float kF16Max = 65504.0f;

// Round a non-negative-or-signed scale to f16 (saturating to the finite range).
uint16_t f16_scale(float d) {
    if (d > kF16Max) d = kF16Max;
    if (d < -kF16Max) d = -kF16Max;
    return canon_f32_to_f16(d);
}

int clampi(float r, int lo, int hi) {
    if (!(r >= (float)lo)) return lo;  // also NaN -> lo
    if (r > (float)hi) return hi;
    return (int)r;
}

// ---- F16 / BF16 ----------------------------------------------------------------------

uint16_t f32_to_bf16(float f) {
    const uint32_t u = canon_float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64u);  // quiet NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Nearest integer, halves away from zero, clamped to [lo, hi] (NaN -> lo). Quantiser-only
// rounding: the canonical activation quantiser uses canon_rint instead.
int round_clamp(float v, int lo, int hi) { return clampi(v >= 0.0f ? v + 0.5f : v - 0.5f, lo, hi); }

// ---- Q8_0 ----------------------------------------------------------------------------

void quant_q8_0(const float* x, block_q8_0* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, x += QK8_0) {
        float amax = 0.0f;
        for (int l = 0; l < 32; ++l) amax = std::max(amax, std::fabs(x[l]));
        // Candidate scales amax / (127 + t/2): a slightly smaller step may clip the extreme
        // value a little but lowers the error of all the others; keep the best.
        uint16_t best_d = f16_scale(amax / 127.0f);
        double best_err = INFINITY;
        for (int t = 0; t <= 8 && amax > 0.0f; ++t) {
            const uint16_t dh = f16_scale(amax / (127.0f + 0.5f * (float)t));
            const float d = canon_f16_to_f32(dh);
            if (!(d > 0.0f)) continue;
            const float id = 1.0f / d;
            double err = 0.0;
            for (int l = 0; l < 32; ++l) {
                const double e = (double)d * round_clamp(x[l] * id, -127, 127) - x[l];
                err += e * e;
            }
            if (err < best_err) {
                best_err = err;
                best_d = dh;
            }
        }
        y[b].d = best_d;
        const float d = canon_f16_to_f32(best_d);
        const float id = d > 0.0f ? 1.0f / d : 0.0f;
        for (int l = 0; l < 32; ++l) y[b].qs[l] = (int8_t)round_clamp(x[l] * id, -127, 127);
    }
}

// ---- Q4_0 ----------------------------------------------------------------------------

void quant_q4_0(const float* x, block_q4_0* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, x += QK4_0) {
        float amax = 0.0f, vmax = 0.0f;
        for (int l = 0; l < 32; ++l)
            if (std::fabs(x[l]) > amax) {
                amax = std::fabs(x[l]);
                vmax = x[l];
            }
        // Candidate scales vmax / -(8 - t/4): the largest value maps to -8 .. -6.
        uint16_t best_d = f16_scale(vmax / -8.0f);
        double best_err = INFINITY;
        for (int t = 0; t <= 8 && vmax != 0.0f; ++t) {
            const uint16_t dh = f16_scale(vmax / -(8.0f - 0.25f * (float)t));
            const float d = canon_f16_to_f32(dh);
            if (!(d != 0.0f)) continue;
            const float id = 1.0f / d;
            double err = 0.0;
            for (int l = 0; l < 32; ++l) {
                const double e = (double)d * round_clamp(x[l] * id, -8, 7) - x[l];
                err += e * e;
            }
            if (err < best_err) {
                best_err = err;
                best_d = dh;
            }
        }
        y[b].d = best_d;
        const float d = canon_f16_to_f32(best_d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int q[32];
        for (int l = 0; l < 32; ++l) q[l] = round_clamp(x[l] * id, -8, 7) + 8;
        for (int l = 0; l < 16; ++l) y[b].qs[l] = (uint8_t)(q[l] | (q[l + 16] << 4));
    }
}

// ---- K-quant sub-block fits ------------------------------------------------------------

struct FitSums {
    double n = 0, q = 0, x = 0, qq = 0, qx = 0, xx = 0;  // counts and moments of (q, x)
    void add(int qi, float xi) {
        n += 1;
        q += qi;
        x += xi;
        qq += (double)qi * qi;
        qx += (double)qi * xi;
        xx += (double)xi * xi;
    }
};

// Least squares x ~ s*q + o over fixed codes, with s >= 0 and o <= 0; returns the squared error.
double fit_ls(const FitSums& S, double* s, double* o) {
    const double det = S.n * S.qq - S.q * S.q;
    if (det > 0) {
        *s = (S.n * S.qx - S.q * S.x) / det;
        *o = (S.x - *s * S.q) / S.n;
    } else {
        *s = 0;
        *o = S.x / S.n;
    }
    if (*o > 0) {
        *o = 0;
        *s = S.qq > 0 ? S.qx / S.qq : 0;
    }
    if (*s < 0) {
        *s = 0;
        *o = std::min(S.x / S.n, 0.0);
    }
    return S.xx - 2 * *s * S.qx - 2 * *o * S.x + *s * *s * S.qq + 2 * *s * *o * S.q + S.n * *o * *o;
}

// Affine fit x ~ s*q - m, q in 0..nmax, s >= 0, m >= 0 (value at q = 0 is -m <= 0): candidate
// step sizes around (max - min)/nmax, each refitted by least squares, then a few rounds of
// reassigning q to the best fit and refitting.
void fit_affine(const float* x, int n, int nmax, float* s_out, float* m_out) {
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; ++i) {
        lo = std::min(lo, x[i]);
        hi = std::max(hi, x[i]);
    }
    if (!(hi > lo)) {  // constant (non-positive) block
        *s_out = 0.0f;
        *m_out = -lo;
        return;
    }
    double best_err = INFINITY, best_s = ((double)hi - lo) / nmax, best_o = lo;
    for (int t = -8; t <= 16; t += 2) {
        const float iscale = (float)((nmax + 0.125 * t) / ((double)hi - lo));
        FitSums S;
        for (int i = 0; i < n; ++i) S.add(round_clamp((x[i] - lo) * iscale, 0, nmax), x[i]);
        double s, o;
        const double err = fit_ls(S, &s, &o);
        if (err < best_err) {
            best_err = err;
            best_s = s;
            best_o = o;
        }
    }
    for (int it = 0; it < 3 && best_s > 0; ++it) {
        const float is = (float)(1.0 / best_s), of = (float)best_o;
        FitSums S;
        for (int i = 0; i < n; ++i) S.add(round_clamp((x[i] - of) * is, 0, nmax), x[i]);
        double s, o;
        const double err = fit_ls(S, &s, &o);
        if (!(err < best_err)) break;
        best_err = err;
        best_s = s;
        best_o = o;
    }
    *s_out = (float)best_s;
    *m_out = (float)-best_o;
}

// Symmetric fit x ~ s*q, q in -32..31 (Q6_K sub-blocks of 16): candidate steps around
// vmax/-32 (vmax: the value of largest magnitude), each refitted by least squares.
float fit_symmetric6(const float* x, int n) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < n; ++i)
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            vmax = x[i];
        }
    if (amax == 0.0f) return 0.0f;
    double best_err = INFINITY, best_s = vmax / -32.0;
    for (int t = -8; t <= 16; ++t) {
        const float iscale = (float)(-(32.0 - 0.125 * t) / vmax);
        double sqq = 0, sqx = 0, sxx = 0;
        for (int i = 0; i < n; ++i) {
            const int q = round_clamp(x[i] * iscale, -32, 31);
            sqq += (double)q * q;
            sqx += (double)q * x[i];
            sxx += (double)x[i] * x[i];
        }
        if (sqq <= 0) continue;
        const double s = sqx / sqq;
        const double err = sxx - s * sqx;
        if (err < best_err) {
            best_err = err;
            best_s = s;
        }
    }
    return (float)best_s;
}

// Pack 8 scales and 8 mins (6 bits each) into the GGUF 12-byte layout (see blocks.h).
void pack_k4_scales(const uint8_t* sc, const uint8_t* m, uint8_t* out) {
    for (int j = 0; j < 4; ++j) {
        out[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

// Q4_K (nmax 15) and Q5_K (nmax 31) super-block: fills d, dmin, scales and the 256 q values.
void quant_k4_block(const float* x, int nmax, uint16_t* d_out, uint16_t* dmin_out, uint8_t* scales,
                    uint8_t* q) {
    float s[8], m[8], smax = 0.0f, mmax = 0.0f;
    for (int j = 0; j < 8; ++j) {
        fit_affine(x + 32 * j, 32, nmax, &s[j], &m[j]);
        smax = std::max(smax, s[j]);
        mmax = std::max(mmax, m[j]);
    }
    *d_out = f16_scale(smax / 63.0f);
    *dmin_out = f16_scale(mmax / 63.0f);
    const float d = canon_f16_to_f32(*d_out), dmin = canon_f16_to_f32(*dmin_out);
    uint8_t sc[8], mq[8];
    for (int j = 0; j < 8; ++j) {
        sc[j] = (uint8_t)(d > 0.0f ? clampi(canon_rint(s[j] / d), 0, 63) : 0);
        mq[j] = (uint8_t)(dmin > 0.0f ? clampi(canon_rint(m[j] / dmin), 0, 63) : 0);
    }
    // Quantised scale/min pairs: try the neighbours of each rounded (sc, m), codes recomputed.
    for (int j = 0; j < 8; ++j) {
        const float* xj = x + 32 * j;
        double best_err = INFINITY;
        int bsc = sc[j], bm = mq[j];
        for (int ds_i = -1; ds_i <= 1; ++ds_i)
            for (int dm_i = -1; dm_i <= 1; ++dm_i) {
                const int c_sc = sc[j] + ds_i, c_m = mq[j] + dm_i;
                if (c_sc < 0 || c_sc > 63 || c_m < 0 || c_m > 63) continue;
                const float ds = d * (float)c_sc, dm = dmin * (float)c_m;
                const float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
                double err = 0;
                for (int l = 0; l < 32; ++l) {
                    const int q = ds > 0.0f ? round_clamp((xj[l] + dm) * ids, 0, nmax) : 0;
                    const double e = (double)ds * q - dm - xj[l];
                    err += e * e;
                }
                if (err < best_err) {
                    best_err = err;
                    bsc = c_sc;
                    bm = c_m;
                }
            }
        sc[j] = (uint8_t)bsc;
        mq[j] = (uint8_t)bm;
        const float ds = d * (float)bsc, dm = dmin * (float)bm;
        const float ids = ds > 0.0f ? 1.0f / ds : 0.0f;
        for (int l = 0; l < 32; ++l) q[32 * j + l] = (uint8_t)(ds > 0.0f ? round_clamp((xj[l] + dm) * ids, 0, nmax) : 0);
    }
    pack_k4_scales(sc, mq, scales);
}

void quant_q4_K(const float* x, block_q4_K* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, x += QK_K) {
        uint8_t q[QK_K];
        quant_k4_block(x, 15, &y[b].d, &y[b].dmin, y[b].scales, q);
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y[b].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

void quant_q5_K(const float* x, block_q5_K* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, x += QK_K) {
        uint8_t q[QK_K];
        quant_k4_block(x, 31, &y[b].d, &y[b].dmin, y[b].scales, q);
        std::memset(y[b].qh, 0, sizeof(y[b].qh));
        for (int c = 0; c < 4; ++c)
            for (int l = 0; l < 32; ++l)
                y[b].qs[32 * c + l] = (uint8_t)((q[64 * c + l] & 15) | ((q[64 * c + 32 + l] & 15) << 4));
        for (int j = 0; j < 8; ++j)
            for (int l = 0; l < 32; ++l) y[b].qh[l] |= (uint8_t)(((q[32 * j + l] >> 4) & 1) << j);
    }
}

void quant_q6_K(const float* x, block_q6_K* y, int64_t nb) {
    for (int64_t b = 0; b < nb; ++b, x += QK_K) {
        float s[16], amax = 0.0f;
        for (int j = 0; j < 16; ++j) {
            s[j] = fit_symmetric6(x + 16 * j, 16);
            amax = std::max(amax, std::fabs(s[j]));
        }
        y[b].d = f16_scale(amax / 127.0f);
        const float d = canon_f16_to_f32(y[b].d);
        std::memset(y[b].ql, 0, sizeof(y[b].ql));
        std::memset(y[b].qh, 0, sizeof(y[b].qh));
        for (int j = 0; j < 16; ++j) {
            const float* xj = x + 16 * j;
            const int sc0 = d > 0.0f ? clampi(canon_rint(s[j] / d), -127, 127) : 0;
            int sc = sc0;
            double best_err = INFINITY;
            for (int c = sc0 - 1; c <= sc0 + 1; ++c) {  // neighbours of the rounded scale
                if (c < -127 || c > 127) continue;
                const float ds = d * (float)c, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
                double err = 0;
                for (int l = 0; l < 16; ++l) {
                    const double e = (double)ds * round_clamp(xj[l] * ids, -32, 31) - xj[l];
                    err += e * e;
                }
                if (err < best_err) {
                    best_err = err;
                    sc = c;
                }
            }
            y[b].scales[j] = (int8_t)sc;
            const float ds = d * (float)sc, ids = ds != 0.0f ? 1.0f / ds : 0.0f;
            for (int l = 0; l < 16; ++l) {
                const int i = 16 * j + l;
                const int qu = round_clamp(xj[l] * ids, -32, 31) + 32;
                const int h = i >> 7, g = (i >> 5) & 3, k = i & 31;
                y[b].ql[64 * h + 32 * (g & 1) + k] |= (uint8_t)((qu & 15) << (4 * (g >> 1)));
                y[b].qh[32 * h + k] |= (uint8_t)((qu >> 4) << (2 * g));
            }
        }
    }
}

}  // namespace

void quantize_row(uint32_t type, const float* src, void* dst, int64_t n) {
    const GGMLTypeTraits* t = ggml_type_traits(type);
    if (!t || !ggml_type_supported(type))
        throw UnsupportedType(std::string("quantize: unsupported tensor type ") + ggml_type_name(type));
    if (n < 0 || n % t->block_size != 0)
        throw std::invalid_argument(std::string("quantize: ") + std::to_string(n) +
                                    " values is not a multiple of the " + t->name + " block size " +
                                    std::to_string(t->block_size));
    switch (type) {
        case GGML_TYPE_F32:
            if (n) std::memcpy(dst, src, (size_t)n * sizeof(float));
            return;
        case GGML_TYPE_F16: {
            uint16_t* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = canon_f32_to_f16(src[i]);
            return;
        }
        case GGML_TYPE_BF16: {
            uint16_t* h = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) h[i] = f32_to_bf16(src[i]);
            return;
        }
        case GGML_TYPE_Q4_0:
            quant_q4_0(src, static_cast<block_q4_0*>(dst), n / QK4_0);
            return;
        case GGML_TYPE_Q8_0:
            quant_q8_0(src, static_cast<block_q8_0*>(dst), n / QK8_0);
            return;
        case GGML_TYPE_Q4_K:
            quant_q4_K(src, static_cast<block_q4_K*>(dst), n / QK_K);
            return;
        case GGML_TYPE_Q5_K:
            quant_q5_K(src, static_cast<block_q5_K*>(dst), n / QK_K);
            return;
        case GGML_TYPE_Q6_K:
            quant_q6_K(src, static_cast<block_q6_K*>(dst), n / QK_K);
            return;
        default:
            break;
    }
    throw UnsupportedType(std::string("quantize: unsupported tensor type ") + ggml_type_name(type));
}

}  // namespace qwen3moe
