#!/usr/bin/env python3
"""Evaluate the embedded model: held-out perplexity and top-1 accuracy, HF float vs our Q4_K_M.

    python3 scripts/eval_embedded_model.py --hf OUT/hf --gguf OUT/embedded-q4km.gguf \
        --heldout OUT/heldout_files.json [--max-tokens 32768] [--write-data python/qwen3moe/data]

Design: the held-out files (listed by the training run, relative to the stdlib directory) are
read from this machine's stdlib (files missing or changed here are skipped or just differ; the
count used is reported), tokenized by the GGUF's tokenizer, joined with <|endoftext|>, cut to
--max-tokens and scored in non-overlapping windows of --window tokens (each window from an
empty cache; the first token of a window is context only). Scored: the HF float model (torch,
CPU, float32 from the bf16 checkpoint) and our engine on the Q4_K_M file (CPU q8; CUDA too when
available, which must give the identical logits). Then the greedy completion of
`def fibonacci(n):`. With --write-data, `heldout_sample.txt` (the first --sample-chars of
held-out text) and `embedded-model.json` (every figure, the sample's HF perplexity included)
are written for tests_py/test_embedded_model.py.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROMPT = "def fibonacci(n):"


def window_logits_scores(logits: np.ndarray, tokens: list[int]) -> tuple[float, int, int]:
    """(sum of -log p(next token), number of predictions, top-1 hits) for one window's logits
    [T, vocab] (float64 log-softmax)."""
    lg = np.asarray(logits[:-1], np.float64)
    nxt = np.asarray(tokens[1:])
    m = lg.max(-1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(lg - m).sum(-1)))
    nll = float((lse - lg[np.arange(len(nxt)), nxt]).sum())
    return nll, len(nxt), int((lg.argmax(-1) == nxt).sum())


def score(logits_fn, tokens: list[int], window: int) -> dict:
    """Perplexity and top-1 accuracy of next-token prediction over non-overlapping windows;
    logits_fn(window_tokens) -> [T, vocab] logits."""
    nll = 0.0
    n = hits = 0
    for s in range(0, len(tokens) - 1, window):
        w = tokens[s: s + window]
        if len(w) < 2:
            break
        a, b, c = window_logits_scores(logits_fn(w), w)
        nll, n, hits = nll + a, n + b, hits + c
    return {"perplexity": math.exp(nll / n), "top1": hits / n, "n_predictions": n, "window": window}


def engine_logits_fn(model):
    def fn(toks: list[int]) -> np.ndarray:
        model.reset()
        return model.forward(toks, logits="all").logits
    return fn


def hf_logits_fn(hf):
    import torch

    def fn(toks: list[int]) -> np.ndarray:
        with torch.no_grad():
            return hf(input_ids=torch.tensor([toks]), use_cache=False).logits[0].double().numpy()
    return fn


def heldout_text(heldout_json: str) -> tuple[list[str], int]:
    with open(heldout_json, encoding="utf-8") as f:
        files = json.load(f)["files"]
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for rel in files:
        p = root / rel
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return texts, len(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="held-out perplexity / top-1 of the embedded model")
    ap.add_argument("--hf", required=True, help="HF checkpoint directory")
    ap.add_argument("--gguf", required=True, help="the Q4_K_M GGUF")
    ap.add_argument("--heldout", required=True, help="heldout_files.json of the training run")
    ap.add_argument("--max-tokens", type=int, default=32768)
    ap.add_argument("--window", type=int, default=512)
    ap.add_argument("--sample-chars", type=int, default=6000)
    ap.add_argument("--write-data", default=None, help="directory for embedded-model.json + heldout_sample.txt")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        import qwen3moe
    except ImportError:
        sys.path.insert(0, str(REPO / "python"))
        import qwen3moe
    import torch
    from transformers import Qwen3MoeForCausalLM

    texts, n_listed = heldout_text(args.heldout)
    if not texts:
        raise SystemExit("none of the held-out files exists on this machine")
    res: dict = {"n_heldout_files_listed": n_listed, "n_heldout_files_read": len(texts),
                 "stdlib": sysconfig.get_paths()["stdlib"], "python": sys.version.split()[0]}
    hf = Qwen3MoeForCausalLM.from_pretrained(args.hf, dtype=torch.float32, experts_implementation="eager").eval()
    cpu = qwen3moe.load(args.gguf, n_ctx=max(args.window, 256), activations="q8", threads=args.threads)
    eot = cpu.tokenize("<|endoftext|>", special=True)
    toks: list[int] = []
    for t in texts:
        toks += cpu.tokenize(t) + eot
        if len(toks) >= args.max_tokens:
            break
    toks = toks[: args.max_tokens]
    t0 = time.time()
    res["hf_float"] = score(hf_logits_fn(hf), toks, args.window)
    res["hf_float"]["seconds"] = round(time.time() - t0, 1)
    t0 = time.time()
    res["ours_q4km_cpu"] = score(engine_logits_fn(cpu), toks, args.window)
    res["ours_q4km_cpu"]["seconds"] = round(time.time() - t0, 1)
    if qwen3moe.cuda_available():
        with qwen3moe.load(args.gguf, device="cuda", n_ctx=max(args.window, 256)) as gpu:
            w = toks[: args.window]
            cpu.reset()
            same = np.array_equal(engine_logits_fn(cpu)(w), engine_logits_fn(gpu)(w))
            res["ours_q4km_cuda"] = dict(score(engine_logits_fn(gpu), toks, args.window), identical_to_cpu_first_window=same)
    cpu.reset()
    res["completion"] = PROMPT + cpu.generate(PROMPT, max_tokens=64)
    if args.write_data:
        d = Path(args.write_data)
        d.mkdir(parents=True, exist_ok=True)
        sample = "\n".join(texts)[: args.sample_chars]
        (d / "heldout_sample.txt").write_text(sample, encoding="utf-8")
        st = cpu.tokenize(sample)
        res["sample"] = {"file": "heldout_sample.txt", "chars": len(sample), "n_tokens": len(st),
                         "window": 256, "hf_float": score(hf_logits_fn(hf), st, 256),
                         "ours_q4km_cpu": score(engine_logits_fn(cpu), st, 256)}
        (d / "embedded-model.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    cpu.close()
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
