"""A few fused decode steps of a model, for kernel analysis with Nsight Compute:
`QWEN3MOE_CUDA_PDL=0 ncu -k regex:dec_ ... python3 bench/ncu_decode.py MODEL.gguf`."""
import sys

import qwen3moe

m = qwen3moe.load(sys.argv[1], device="cuda", n_ctx=512)
m.forward(list(range(1, 65)), logits="last")
for t in range(4):
    m.decode(t + 5, logits="last")
