// embed.cu — one block per token (grid-stride over tokens), threads over the row's values.
#include <stdexcept>
#include <string>

#include "cuda/cuda-ops.h"
#include "cuda/dequant.cuh"
#include "cuda/embed.cuh"
#include "runtime/errors.h"

namespace qwen3moe::cuda {

namespace {
template <uint32_t T>
__global__ void embed_kernel(const uint8_t* __restrict__ table, int64_t n_vocab, int64_t n,
                             const int32_t* __restrict__ tokens, int n_tok, float* __restrict__ out) {
    const int64_t row_bytes = dequant_row_bytes<T>(n);
    for (int64_t t = blockIdx.x; t < n_tok; t += gridDim.x) {
        const int64_t tok = tokens[t];
        float* o = out + t * n;
        if (tok < 0 || tok >= n_vocab) {
            for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = __int_as_float(0x7fc00000);
            continue;
        }
        const uint8_t* row = table + tok * row_bytes;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = Dequant<T>::value(row, i);
    }
}

struct Launch {
    const void* table;
    int64_t n_vocab, n;
    const int32_t* tokens;
    int n_tok;
    float* out;
    cudaStream_t stream;
    template <uint32_t T> void operator()() const {
        const unsigned blocks = n_tok < 65535 ? (unsigned)n_tok : 65535u;
        embed_kernel<T><<<blocks, 256, 0, stream>>>(static_cast<const uint8_t*>(table), n_vocab, n, tokens,
                                                    n_tok, out);
        Q3_CUDA_CHECK_LAUNCH();
    }
};
}  // namespace

void embed_launch(uint32_t type, const void* table, int64_t n_vocab, int64_t n, const int32_t* tokens, int n_tok,
                  float* out, cudaStream_t stream) {
    const GGMLTypeTraits* tr = ggml_type_traits(type);
    if (!tr || !dequant_supported(type))
        throw UnsupportedType(std::string("cuda embed: unsupported table type ") + ggml_type_name(type));
    if (n <= 0 || n % tr->block_size != 0 || n_vocab <= 0 || n_tok < 0)
        throw std::invalid_argument("cuda embed: bad shape");
    if (n_tok == 0) return;
    dispatch_dequant_type(type, Launch{table, n_vocab, n, tokens, n_tok, out, stream});
}

void embed(uint32_t type, const void* table, int64_t n_vocab, int64_t n, const int32_t* tokens, int n_tok,
           float* out, void* stream) {
    embed_launch(type, table, n_vocab, n, tokens, n_tok, out, to_stream(stream));
}

}  // namespace qwen3moe::cuda
