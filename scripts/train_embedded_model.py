#!/usr/bin/env python3
"""Train the embedded default model: a small Qwen3-MoE on the Python standard library's sources.

    python3 scripts/train_embedded_model.py --out $OUT --minutes 6      # GPU machine (< 8 min)
    python3 scripts/train_embedded_model.py --out /tmp/smoke --smoke    # CPU, a few steps

Design: corpus = every *.py under sysconfig's stdlib directory (PSF licence; site-packages and
the test suite excluded), read in sorted order; a file is held out when sha256(relative path)
mod 20 == 0 (deterministic, independent of the machine's file set otherwise). A byte-level BPE
vocabulary (4096 ids incl. <|endoftext|>, <|im_start|>, <|im_end|>) is trained with HF
`tokenizers`, with the Qwen2 split regex + ByteLevel pre-tokenizer that qwen3moe's tokenizer
reads, and a ChatML chat template. The model is a Qwen3MoeForCausalLM (hidden 256, 3 layers,
8 experts top-2, expert width 256, 4 query / 2 KV heads of 64, untied output): 7.4 M
parameters, 14.8 MB in bf16 so the checkpoint fits the device's 16 MB return limit. Training:
bf16 autocast, AdamW, linear warm-up then cosine decay over a step count fixed from the
measured speed of the first steps (so the schedule fits --minutes), router load-balancing
loss, fixed seed. The bf16 checkpoint is converted by qwen3moe.convert to Q4_K_M (returned)
and F32 (a check of the converter: our f32 mode vs the HF model, recorded in the log).

Files under --out (at most 8 files, each <= 16 MB, <= 2 folders deep):
  embedded-q4km.gguf   train_log.json (config, loss curve, held-out loss, checks)
  heldout_files.json   hf/{model.safetensors, config.json, tokenizer.json, tokenizer_config.json}
If qwen3moe is not importable, a CPU-only build of its _core is started at once (CMake) and
runs while the model trains.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Hugging Face's Qwen2 split regex (as in qwen3moe.hf_tokenizer.QWEN2_HF_REGEX).
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
HELDOUT_MOD = 20


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- corpus --------------------------------------------------------------------------------


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The corpus files: *.py under the stdlib directory, sorted, without site-packages,
    dist-packages and the test suite (test/, tests/, idle_test/)."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
    out = []
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root)
        if any(part in skip for part in rel.parts[:-1]):
            continue
        out.append(p)
    return out


def is_heldout(rel: str) -> bool:
    """Deterministic held-out split by the file's path relative to the stdlib root."""
    return int(hashlib.sha256(rel.encode()).hexdigest(), 16) % HELDOUT_MOD == 0


def read_corpus(root: Path | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, heldout): lists of (relative path, text); files that are not UTF-8 are skipped."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    train, held = [], []
    for p in stdlib_files(root):
        rel = p.relative_to(root).as_posix()
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip():
            continue
        (held if is_heldout(rel) else train).append((rel, text))
    return train, held


# ---- tokenizer -----------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE (HF tokenizers) with the Qwen2 pre-tokenizer and the three specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok, d: Path) -> None:
    tok.save(str(d / "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(tok.token_to_id(s)): {"content": s, "special": True, "lstrip": False, "rstrip": False,
                                      "normalized": False, "single_word": False} for s in SPECIALS},
    }
    with open(d / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)


def encode_files(tok, files: list[tuple[str, str]]):
    import numpy as np

    eot = tok.token_to_id("<|endoftext|>")
    ids: list[int] = []
    for enc in tok.encode_batch([t for _, t in files], add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(eot)
    return np.asarray(ids, dtype=np.int64)


# ---- qwen3moe import (the converter) -------------------------------------------------------


def _qwen3moe_importable() -> bool:
    try:
        import qwen3moe.convert  # noqa: F401
        return True
    except ImportError:
        return False


def ensure_qwen3moe_build() -> subprocess.Popen | None:
    """None when qwen3moe imports; else start a CPU-only CMake build of _core into python/."""
    if _qwen3moe_importable():
        return None
    sys.path.insert(0, str(REPO / "python"))
    if _qwen3moe_importable():
        return None
    sys.path.pop(0)
    b = REPO / "build" / "train-cpu"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    cmd = (f"cmake -S {REPO} -B {b} {' '.join(gen)} -DQWEN3MOE_CUDA=OFF -DQWEN3MOE_BUILD_TESTS=OFF "
           f"-DQWEN3MOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release && cmake --build {b} -j {os.cpu_count() or 4}")
    log("qwen3moe not importable: building its CPU core in the background")
    return subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_qwen3moe(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"qwen3moe CPU build failed:\n{out[-3000:]}")
        sys.path.insert(0, str(REPO / "python"))
    import qwen3moe.convert  # noqa: F401


# ---- model ---------------------------------------------------------------------------------


def model_config(vocab_size: int, smoke: bool):
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        vocab_size=vocab_size, hidden_size=256, intermediate_size=768, moe_intermediate_size=256,
        num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=4096, tie_word_embeddings=False,
        attention_bias=False, use_sliding_window=False, output_router_logits=True, router_aux_loss_coef=0.01,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, initializer_range=0.02,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--minutes", type=float, default=6.0, help="training time budget (default 6)")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run: few files, a few steps")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256, help="training sequence length")
    ap.add_argument("--batch", type=int, default=64, help="sequences per step")
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args(argv)
    t_start = time.time()
    out = Path(args.out)
    (out / "hf").mkdir(parents=True, exist_ok=True)
    build = ensure_qwen3moe_build()

    import numpy as np
    import torch

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    dev = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        args.seq, args.batch, args.vocab = 64, 4, min(args.vocab, 1024)

    train_files, held_files = read_corpus()
    if args.smoke:
        train_files, held_files = train_files[:40], held_files[:5]
    log(f"corpus: {len(train_files)} train files ({sum(len(t) for _, t in train_files) / 1e6:.1f} MB), "
        f"{len(held_files)} held out; device {dev}")
    tok = train_tokenizer([t for _, t in train_files], args.vocab)
    hf_dir = out / "hf"
    save_tokenizer(tok, hf_dir)
    train_ids = encode_files(tok, train_files)
    held_ids = encode_files(tok, held_files)
    log(f"tokenizer: {tok.get_vocab_size()} ids; {len(train_ids)} train tokens, {len(held_ids)} held-out tokens "
        f"({sum(len(t) for _, t in train_files) / len(train_ids):.2f} chars/token)")
    with open(out / "heldout_files.json", "w") as f:
        json.dump({"stdlib": sysconfig.get_paths()["stdlib"], "python": sys.version.split()[0],
                   "rule": f"sha256(relative path) % {HELDOUT_MOD} == 0",
                   "files": [r for r, _ in held_files]}, f, indent=1)

    from transformers import Qwen3MoeForCausalLM

    cfg = model_config(tok.get_vocab_size(), args.smoke)
    model = Qwen3MoeForCausalLM(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters ({2 * n_params / 2**20:.1f} MiB in bf16)")
    if 2 * n_params > 16 * 2**20 - 2**16:
        raise SystemExit("the bf16 checkpoint would exceed the 16 MB file limit")
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=dev == "cuda")
    gen = np.random.default_rng(args.seed)
    train_t = torch.from_numpy(train_ids)
    held_t = torch.from_numpy(held_ids)
    amp = torch.autocast(dev, dtype=torch.bfloat16)

    def batch(ids, rng, n):
        starts = rng.integers(0, len(ids) - args.seq - 1, size=n)
        x = torch.stack([ids[s: s + args.seq + 1] for s in starts]).to(dev, non_blocking=True)
        return x[:, :-1], x[:, 1:]

    held_rng = np.random.default_rng(args.seed + 1)
    held_batches = [batch(held_t, held_rng, args.batch) for _ in range(2 if args.smoke else 8)]

    @torch.no_grad()
    def held_loss() -> float:
        model.eval()
        tot = 0.0
        for x, y in held_batches:
            with amp:
                logits = model(input_ids=x, use_cache=False).logits
            tot += float(torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)))
        model.train()
        return tot / len(held_batches)

    budget = args.minutes * 60.0
    probe = 3 if args.smoke else 20
    total_steps = 6 if args.smoke else None
    warmup = 2 if args.smoke else 100
    curve: list[dict] = []
    step = 0
    t_train = time.time()
    model.train()
    while total_steps is None or step < total_steps:
        if step == probe and total_steps is None:
            if dev == "cuda":
                torch.cuda.synchronize()
            per = (time.time() - t_train) / probe
            total_steps = max(probe + 1, int(budget / per * 0.97))
            log(f"{per * 1e3:.1f} ms/step: {total_steps} steps in the {args.minutes:g}-minute budget")
        n_sched = total_steps or 10**9
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / n_sched))))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = batch(train_t, gen, args.batch)
        with amp:
            out_ = model(input_ids=x, labels=None, use_cache=False, output_router_logits=True)
            lm = torch.nn.functional.cross_entropy(out_.logits.float().reshape(-1, out_.logits.shape[-1]), y.reshape(-1))
            loss = lm + cfg.router_aux_loss_coef * out_.aux_loss if out_.aux_loss is not None else lm
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % (1 if args.smoke else 50) == 0 or step == total_steps:
            rec = {"step": step, "t": round(time.time() - t_train, 2), "lr": lr, "loss": lm.item()}
            if step % (2 if args.smoke else 500) == 0 or step == total_steps:
                rec["heldout_loss"] = held_loss()
            curve.append(rec)
            log(json.dumps(rec))
    train_s = time.time() - t_train
    final_held = held_loss()
    log(f"trained {step} steps in {train_s:.0f} s; held-out loss {final_held:.4f} (ppl {math.exp(final_held):.2f})")

    model = model.to("cpu", dtype=torch.bfloat16).eval()
    model.config.output_router_logits = False
    model.config.use_cache = True
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size="1GB")
        for name in ("model.safetensors", "config.json"):
            shutil.copy(Path(tmp) / name, hf_dir / name)

    wait_qwen3moe(build)
    import qwen3moe
    from qwen3moe.convert import convert

    gguf = convert(hf_dir, out / "embedded-q4km.gguf", type="Q4_K_M")
    checks: dict = {"gguf_bytes": os.path.getsize(gguf)}
    with tempfile.TemporaryDirectory() as tmp:
        f32 = convert(hf_dir, Path(tmp) / "f32.gguf", type="F32")
        text = held_files[0][1][:2000]
        hf = Qwen3MoeForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32, experts_implementation="eager").eval()
        for name, path, act in (("f32_gguf_f32_mode", f32, "f32"), ("q4km_gguf_q8_mode", gguf, "q8")):
            with qwen3moe.load(path, n_ctx=1024, activations=act) as m:
                toks = m.tokenize(text)[:512]
                assert toks == tok.encode(text, add_special_tokens=False).ids[:512], "tokenizers disagree"
                ours = m.forward(toks, logits="all").logits.astype(np.float64)
            with torch.no_grad():
                ref = hf(input_ids=torch.tensor([toks]), use_cache=False).logits[0].double().numpy()
            cos = (ours * ref).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(ref, axis=-1)
            checks[name] = {"min_logits_cos_vs_hf": float(cos.min()),
                            "argmax_agree": float((ours.argmax(-1) == ref.argmax(-1)).mean()), "n_tokens": len(toks)}
            log(f"{name}: {checks[name]}")
        with qwen3moe.load(gguf, n_ctx=256) as m:
            checks["completion"] = "def fibonacci(n):" + m.generate("def fibonacci(n):", max_tokens=48)
        log("completion:\n" + checks["completion"])
    with open(out / "train_log.json", "w") as f:
        json.dump({"args": vars(args), "device": dev, "torch": torch.__version__, "n_params": n_params,
                   "config": cfg.to_dict(), "vocab_size": tok.get_vocab_size(),
                   "n_train_files": len(train_files), "n_heldout_files": len(held_files),
                   "n_train_tokens": int(len(train_ids)), "n_heldout_tokens": int(len(held_ids)),
                   "steps": step, "train_seconds": round(train_s, 1), "final_heldout_loss": final_held,
                   "curve": curve, "checks": checks, "total_seconds": round(time.time() - t_start, 1)}, f, indent=1)
    for p in sorted(out.rglob("*")):
        if p.is_file():
            log(f"{p.relative_to(out)}  {p.stat().st_size / 2**20:.2f} MiB")
    log(f"done in {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
