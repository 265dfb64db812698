"""Prefill matvec shapes of the 30B model (pp512) through the int8 tensor-core kernels: the wide
kernel (cuda/matvec-mma-wide.cu, ``new``) against the 16-slot one (cuda/matvec-mma.cu, ``old``),
both selected in-process with ``_core.cuda_ops_mma_variant``.

Each case uploads its operands once and times ``--reps`` launches with CUDA events on the default
stream (``_core.cuda_ops_matvec_q8k_timed``, one warm-up launch first); it prints one line per case
and, at the end, one JSON document: per case and kernel the median / min ms, the int8 TOPS of the
median (2 x rows x n x slots operations over the median time), and whether old and new gave the
same bits (they must; the dense cases are also checked against the CPU dot).
``python3 bench/matvec_mma_bench.py [--reps 20] [--tokens 512]``
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from qwen3moe import _core, quant

sys.path.insert(0, "tests_py")
from test_cuda_ops import _q8k_bytes, _weights  # noqa: E402


def _time(variant: str, typ: str, w, n: int, xq, ids, aps: bool, reps: int):
    _core.cuda_ops_mma_variant(variant)
    if ids is None:
        out, ms = _core.cuda_ops_matvec_q8k_timed(quant.type_id(typ), w, n, xq, reps=reps)
    else:
        out, ms = _core.cuda_ops_matvec_q8k_timed(quant.type_id(typ), w, n, xq, ids, aps, True, reps)
    return out, float(np.median(ms)), float(np.min(ms))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n_tok, k, n_exp = args.tokens, 8, 128
    logits = rng.standard_normal((n_tok, n_exp)) + np.linspace(0, 2, n_exp)  # uneven routing
    ids = np.argsort(-logits, axis=1)[:, :k].astype(np.int32)
    cases = []
    # (name, type, rows, n, experts?)  — per layer of the 30B: q, k, v, o, gate, up, down.
    shapes = [("q", "Q4_K", 4096, 2048, False), ("k", "Q4_K", 512, 2048, False), ("v", "Q6_K", 512, 2048, False),
              ("o", "Q4_K", 2048, 4096, False), ("gate/up", "Q4_K", 768, 2048, True),
              ("down", "Q6_K", 2048, 768, True), ("down", "Q4_K", 2048, 768, True),
              ("q", "Q5_K", 4096, 2048, False), ("q", "Q8_0", 4096, 2048, False), ("q", "Q4_0", 4096, 2048, False)]
    for name, typ, n_rows, n, experts in shapes:
        if experts:
            w = _weights(rng, typ, n_rows * n_exp, n).reshape(n_exp, n_rows, -1)
            aps = name == "down"
            x = rng.standard_normal((n_tok * k if aps else n_tok, n)).astype(np.float32)
            case_ids, slots = ids, n_tok * k
        else:
            w = _weights(rng, typ, n_rows, n)
            aps = False
            x = rng.standard_normal((n_tok, n)).astype(np.float32)
            case_ids, slots = None, n_tok
        xq = _q8k_bytes(x)
        res = {"case": name, "type": typ, "rows": n_rows, "n": n, "slots": slots, "experts": experts}
        outs = {}
        for variant in ("old", "new"):
            out, med, mn = _time(variant, typ, w, n, xq, case_ids, aps, args.reps)
            outs[variant] = out
            res[variant] = {"median_ms": med, "min_ms": mn, "tops": 2.0 * n_rows * n * slots / (med * 1e-3) / 1e12}
        res["same_bits"] = bool(np.array_equal(outs["old"].view(np.uint32), outs["new"].view(np.uint32)))
        if not experts:
            want = np.asarray(quant.dot_q8k(w, typ, x), dtype=np.float32).reshape(outs["new"].shape)
            res["new_eq_cpu"] = bool(np.array_equal(outs["new"].view(np.uint32), want.view(np.uint32)))
        cases.append(res)
        print(f"{name:8s} {typ} {n_rows}x{n} slots={slots}: old {res['old']['median_ms']:.3f} ms "
              f"new {res['new']['median_ms']:.3f} ms ({res['old']['median_ms'] / res['new']['median_ms']:.2f}x, "
              f"{res['new']['tops']:.0f} TOPS) same bits {res['same_bits']}"
              + (f", new == CPU {res['new_eq_cpu']}" if not experts else ""), flush=True)
    _core.cuda_ops_mma_variant("new")
    print(json.dumps({"tokens": n_tok, "reps": args.reps, "cases": cases}))


if __name__ == "__main__":
    main()
