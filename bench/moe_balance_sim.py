"""Simulated thread balance of the CPU MoE expert regions: `python3 bench/moe_balance_sim.py`.

Design: the CPU backend (cpp/model/cpu-backend.cpp, moe_experts) splits the gate/up and the down
regions into work units: a row of an active expert with c tokens weighs c * nb + row_pairs units
(nb = 256-blocks per row; row_pairs = the knob, 0 = by tokens alone), unit boundaries map to rows
by `active_row` (first row starting at or after the boundary), and the pool cuts [0, units) into
P static chunks or m * P dynamic chunks (runtime/thread-pool.h). This script replays exactly that
partition for random top-k routing (the synthetic coder30b file's router is random) and prices
each row with a per-row cost model (fixed + per-(token, block) ns, fitted to the one-core AVX-512
figures of bench/NOTES.md "CPU round 4"), so it measures what the partition alone does to the
balance, on equal-speed threads and on threads of unequal speed (--slow N --slow-speed S: N
threads run at S times the others' speed, e.g. vCPUs that share a core with another tenant).
Dynamic chunks are simulated by list scheduling (the next chunk goes to the first idle thread).
Output per region and setting: efficiency = busy thread time / (threads x region wall), and the
region's wall time over the ideal (total cost / sum of thread speeds).
"""
from __future__ import annotations

import argparse

import numpy as np


def row_cost_ns(nb: int, cnt: int) -> float:
    """Cost of one expert row with cnt tokens (Zen 4 AVX-512 fits, round 4): one token takes the
    one-token kernel, more the short-row kernel (fixed part + per (token, block) pair)."""
    if nb == 8:  # 2048-wide gate/up rows
        return 74.0 if cnt == 1 else 35.0 + 3.6 * 8 * cnt
    if nb == 3:  # 768-wide down rows
        return 46.0 if cnt == 1 else 54.0 + 2.6 * 3 * cnt
    raise ValueError(nb)


def simulate(P, T, n_expert, k, nb, rows, row_pairs, chunks, speeds, iters, rng):
    effs = []
    for _ in range(iters):
        cnt = np.zeros(n_expert, np.int64)
        for _t in range(T):
            cnt[rng.choice(n_expert, k, replace=False)] += 1
        act = np.nonzero(cnt)[0]
        u = cnt[act] * nb + row_pairs  # units per row of each active expert
        cum = np.concatenate([[0], np.cumsum(u * rows)])
        n = int(cum[-1])
        cost = np.repeat([row_cost_ns(nb, int(c)) for c in cnt[act]], rows)
        pref = np.concatenate([[0.0], np.cumsum(cost)])

        def active_row(w: int) -> int:
            a = int(np.searchsorted(cum, w, side="right")) - 1
            if a >= len(act):
                return len(act) * rows
            return a * rows + int((w - cum[a] + u[a] - 1) // u[a])

        def chunk_cost(w0: int, w1: int) -> float:
            return pref[active_row(w1)] - pref[active_row(w0)]

        if chunks == 0:
            t = np.array([chunk_cost(n * i // P, n * (i + 1) // P) for i in range(P)]) / speeds
        else:
            C = min(n, chunks * P)
            t = np.zeros(P)
            for c in range(C):
                j = int(np.argmin(t))
                t[j] += chunk_cost(n * c // C, n * (c + 1) // C) / speeds[j]
        ideal = pref[-1] / speeds.sum()  # all threads busy to the end
        effs.append((t.sum() / (P * t.max()), t.max() / ideal))
    return tuple(np.mean(effs, axis=0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--slow", type=int, default=0, help="threads running slower than the others")
    ap.add_argument("--slow-speed", type=float, default=0.66, help="their relative speed")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    P = args.threads
    speeds = np.ones(P)
    speeds[P - args.slow:] = args.slow_speed
    print(f"{P} threads, {args.tokens} tokens, 128 experts top-8; {args.slow} threads at speed {args.slow_speed}")
    for name, nb, rows in (("gate/up", 8, 768), ("down", 3, 2048)):
        for row_pairs in (0, 16):
            for chunks in (0, 4, 8, 16):
                e, w = simulate(P, args.tokens, 128, 8, nb, rows, row_pairs, chunks, speeds, args.iters, rng)
                print(f"{name:8s} row_pairs {row_pairs:2d} chunks {chunks:2d}: efficiency {e:.3f}, wall / ideal {w:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
