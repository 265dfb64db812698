"""Device time of one prefill attention call (the 30B layout: 32 query heads, 4 KV heads,
head_dim 128, f16 cache) for the tiled kernel with its score cache (split 0), the tiled kernel
recomputing its scores (split 1) and the one-block-per-(token, head) kernel (split 4), measured
with torch.profiler (CUPTI kernel durations).

Usage: python3 bench/attn_bench.py [n_tok] [depth ...]   (defaults: 512, depths 0 4096)
Prints per depth: ms per call of each kernel, and x48 layers.
"""
import sys

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from qwen3moe import _core, quant


def kernel_ms(fn, reps=3):
    fn()  # warm-up (module load, cudaFuncSetAttribute)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    tot = sum(e.device_time for e in prof.events() if "att" in e.name and e.device_time > 0)
    return tot / reps / 1000.0


def main():
    n_tok = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    depths = [int(d) for d in sys.argv[2:]] or [0, 4096]
    n_head, n_kv, hd = 32, 4, 128
    rng = np.random.default_rng(0)
    for depth in depths:
        n_ctx = depth + n_tok
        q = rng.standard_normal((n_tok, n_head, hd)).astype(np.float32)
        k = quant.f32_to_f16_bits(rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32))
        v = quant.f32_to_f16_bits(rng.standard_normal((n_ctx, n_kv * hd)).astype(np.float32))
        pos = (depth + np.arange(n_tok)).astype(np.int32)
        res = {}
        outs = {}
        # 0: auto (the tiled kernel, scores cached in scratch); 1: tiled, scores recomputed;
        # 4: one block per (token, head).
        for split in (0, 1, 4):
            res[split] = kernel_ms(lambda: outs.__setitem__(split, _core.cuda_ops_attention(q, k, v, pos, n_kv, split)))
        same = all(np.array_equal(outs[0].view(np.uint32), outs[s].view(np.uint32)) for s in (1, 4))
        print(f"n_tok {n_tok} depth {depth}: tiled+cache {res[0]:.3f} ms (x48 {48 * res[0]:.1f} ms), "
              f"tiled recompute {res[1]:.3f} ms (x48 {48 * res[1]:.1f} ms), one-block {res[4]:.3f} ms, "
              f"cache speedup {res[1] / res[0]:.2f}x, bits equal {same}", flush=True)


if __name__ == "__main__":
    main()
