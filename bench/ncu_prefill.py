"""One prefill of a model, for kernel analysis with Nsight Compute:
`ncu --clock-control none -k regex:"attn_tiled|matvec_mma_wide|matvec_tiled" --launch-skip 30
--launch-count 8 python3 bench/ncu_prefill.py MODEL.gguf [n_prompt] [depth]` (a depth > 0 first
runs a prefill of that many tokens, so skip that prefill's launches too)."""
import sys

import numpy as np

import qwen3moe

path = sys.argv[1]
p = int(sys.argv[2]) if len(sys.argv) > 2 else 512
depth = int(sys.argv[3]) if len(sys.argv) > 3 else 0
m = qwen3moe.load(path, device="cuda", n_ctx=depth + p + 64)
toks = np.random.default_rng(0).integers(1, 1000, size=depth + p).astype(np.int32).tolist()
if depth:
    m.forward(toks[:depth], logits="none")
m.forward(toks[depth:], logits="none")
