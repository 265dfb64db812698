"""Device memory of a CUDA model at a given n_ctx, as the driver sees it:
`python3 bench/vram_probe.py MODEL.gguf N_CTX [n_prompt]`.

Loads the model, runs an n_prompt-token prefill (default 512) and 16 decode steps, and prints
the model's own memory plan (weights / KV cache / scratch) and the device's used memory from
nvidia-smi (CUDA context included) before loading and after the run."""
import json
import subprocess
import sys

import qwen3moe


def used_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[0])


def main() -> None:
    path, n_ctx = sys.argv[1], int(sys.argv[2])
    p = int(sys.argv[3]) if len(sys.argv) > 3 else 512
    before = used_mib()
    m = qwen3moe.load(path, device="cuda", n_ctx=n_ctx)
    m.forward(list(range(1, p + 1)), logits="last")
    for t in range(16):
        m.decode(t + 1, logits="last")
    qwen3moe._core.cuda_synchronize(0)
    after = used_mib()
    rep = {"n_ctx": n_ctx, "n_prompt": p, "model_memory": m.memory(), "peak_vram_bytes": m.peak_vram_bytes(),
           "device_used_mib_before": before, "device_used_mib_after": after,
           "device_used_gib_delta": round((after - before) / 1024, 3)}
    print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
