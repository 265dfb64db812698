// libFuzzer target for the GGUF reader: parse arbitrary bytes with GGUFFile::from_memory and,
// when they load, touch every key, value (recursively), tensor record and tensor byte, and
// call the typed getters, so a bad bound or dangling pointer shows up under ASan/UBSan.
// Build: cmake -S . -B build/fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DQWEN3MOE_FUZZ=ON
//        -DQWEN3MOE_CUDA=OFF && cmake --build build/fuzz --target fuzz-gguf
// Run:   build/fuzz/fuzz-gguf -max_total_time=60 -rss_limit_mb=512 tests_cpp/fuzz/corpus-gguf
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gguf/gguf-reader.h"
#include "runtime/errors.h"

using namespace qwen3moe;

namespace {

volatile uint64_t g_sink;

uint64_t touch(const GGUFValue& v) {
    uint64_t h = uint64_t(v.type) ^ v.u ^ uint64_t(v.i);
    double f = v.f;
    uint64_t fb;
    std::memcpy(&fb, &f, 8);
    h ^= fb;
    for (char c : v.s) h = h * 31 + uint8_t(c);
    for (const GGUFValue& e : v.arr) h = h * 7 + touch(e);
    return h;
}

template <class F>
void swallow(F&& f) {
    try {
        f();
    } catch (const GGUFError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::unique_ptr<GGUFFile> f;
    try {
        f = GGUFFile::from_memory(data, size);
    } catch (const GGUFError&) {
        return 0;
    }
    uint64_t h = f->version() ^ f->alignment() ^ f->data_offset() ^ f->file_size();
    for (const std::string& key : f->keys()) {
        const GGUFValue* v = f->find(key);
        if (!v) __builtin_trap();  // every listed key must be findable
        h ^= touch(*v);
        swallow([&] { h ^= f->get_u32(key); });
        swallow([&] { h ^= uint64_t(f->get_i32(key)); });
        swallow([&] { h ^= f->get_u64(key); });
        swallow([&] {
            const float x = f->get_f32(key);
            uint32_t xb;
            std::memcpy(&xb, &x, 4);
            h ^= xb;
        });
        swallow([&] { h ^= f->get_bool(key); });
        swallow([&] { h ^= f->get_str(key).size(); });
        swallow([&] { h ^= f->get_arr(key, v->elem_type).arr.size(); });
    }
    for (const GGUFTensorInfo& t : f->tensors()) {
        if (f->find_tensor(t.name) != &t) __builtin_trap();
        if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
        h ^= t.type ^ t.n_dims ^ uint64_t(t.n_elements()) ^ t.offset;
        for (uint64_t k = 0; k < t.nbytes; ++k) h += t.data[k];  // every byte must be readable
    }
    g_sink = h;
    return 0;
}
