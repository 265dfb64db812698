// amx_probe.cpp — can this process use Intel AMX int8 tiles, and how fast are they? Not part
// of the build:
//   g++ -O2 -std=c++17 -mamx-tile -mamx-int8 -mavx512f bench/amx_probe.cpp -o build/amx_probe
//   build/amx_probe
// Prints the CPUID bits, the kernel's answer to the XTILEDATA permission request, one
// u8 x s8 product (16 x 16 x 32, the K of one Q4_K sub-block) checked against a scalar loop, and
// the throughput of TDPBUSD at K = 32 and K = 64 (MACs per ns, one core).
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>

struct alignas(64) TileCfg {
    uint8_t palette = 1, start_row = 0, pad[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

static void config(int kbytes) {
    TileCfg c;
    for (int t = 0; t < 8; ++t) { c.rows[t] = 16; c.colsb[t] = 64; }
    c.colsb[4] = c.colsb[5] = (uint16_t)kbytes;  // A tiles: 16 rows x K bytes
    c.rows[6] = c.rows[7] = (uint8_t)(kbytes / 4);  // B tiles: K/4 rows x 64 bytes
    _tile_loadconfig(&c);
}

int main() {
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    const bool amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
    std::printf("cpuid amx_tile %d amx_int8 %d\n", (int)amx_tile, (int)amx_int8);
    if (!amx_tile || !amx_int8) return 0;
    const long rc = syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */);
    std::printf("arch_prctl XTILEDATA -> %ld\n", rc);
    if (rc != 0) return 0;
    std::mt19937 rng(7);
    alignas(64) uint8_t A[16][32];
    alignas(64) int8_t B[32][16], Bv[8][64];
    for (auto& r : A) for (auto& x : r) x = rng() % 16;
    for (auto& r : B) for (auto& x : r) x = (int8_t)((int)(rng() % 255) - 127);
    for (int k = 0; k < 32; ++k)
        for (int n = 0; n < 16; ++n) Bv[k / 4][n * 4 + k % 4] = B[k][n];
    alignas(64) int32_t C[16][16] = {};
    config(32);
    _tile_zero(0);
    _tile_loadd(4, A, 32);
    _tile_loadd(6, Bv, 64);
    _tile_dpbusd(0, 4, 6);
    _tile_stored(0, C, 64);
    int bad = 0;
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) {
            int32_t s = 0;
            for (int k = 0; k < 32; ++k) s += (int32_t)A[m][k] * B[k][n];
            bad += s != C[m][n];
        }
    std::printf("16x16x32 product: %d of 256 differ from the scalar loop\n", bad);
    for (int kb : {32, 64}) {
        config(kb);
        alignas(64) static uint8_t buf[2][16 * 64];
        _tile_loadd(4, buf[0], kb);
        _tile_loadd(5, buf[1], kb);
        _tile_loadd(6, buf[0], 64);
        _tile_loadd(7, buf[1], 64);
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        const int iters = 1 << 22;
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < iters; ++i) {
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
        _tile_stored(0, C, 64);
        const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
        std::printf("K=%d: %.2f ns per TDPBUSD, %.0f MACs per ns (C[0][0] %d)\n", kb, ns / (4.0 * iters),
                    4.0 * iters * 16 * 16 * kb / ns, C[0][0]);
    }
    _tile_release();
    return 0;
}
