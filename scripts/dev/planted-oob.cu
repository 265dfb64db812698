// Sanitizer self-check (not shipped): one deliberate out-of-bounds write. On the GPU machine,
// `nvcc -o /tmp/planted scripts/dev/planted-oob.cu && compute-sanitizer /tmp/planted` must report
// "Invalid __global__ write" — proof that the tool instruments kernels there before trusting its
// "0 errors" on ours (scripts/compute-sanitizer.sh).
#include <cstdio>
__global__ void k(int* p) { p[threadIdx.x + 32] = 1; }
int main() { int* p; cudaMalloc(&p, 32 * sizeof(int)); k<<<1, 32>>>(p); cudaDeviceSynchronize(); cudaFree(p); printf("ran\n"); return 0; }
