"""Child process of test_gguf_hostile.test_random_mutations_in_subprocess (also runnable by
hand): parses every truncation and N random mutations of a small valid GGUF file with the
address space limited to (current usage + ALLOC_SLACK), so a crash kills only this process and
an allocation driven by a hostile count fails. Prints one JSON summary line; exit 0 when every
input either loaded or raised GGUFError within 1 s and loaded files are self-consistent."""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _gguf_builder import valid_small  # noqa: E402

import qwen3moe  # noqa: E402
from qwen3moe.gguf import inspect, inspect_bytes  # noqa: E402

ALLOC_SLACK = 32 << 20  # bytes of address space allowed beyond the baseline
INTERESTING = [0, 1, 2, 3, 4, 5, 7, 8, 12, 13, 31, 32, 33, 63, 64, 255, 256, 0x7F, 0x80, 0xFF, 0xFFFF,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2**32, 2**40, 2**61, 2**62, 2**63 - 1, 2**63, 2**64 - 32,
               2**64 - 1]


def vm_size() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def mutate(rng: random.Random, data: bytes, fields: list[tuple[int, int, str]]) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0:  # flip random bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 1:  # interesting value into a known count/length/type/offset field
        off, width, _ = rng.choice(fields)
        v = rng.choice(INTERESTING) + rng.choice([0, 0, 0, -1, 1])
        b[off:off + width] = (v & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    elif kind == 2:  # interesting u32/u64 anywhere
        width = rng.choice([4, 8])
        off = rng.randrange(max(1, len(b) - width))
        b[off:off + width] = struct.pack("<Q" if width == 8 else "<I", rng.choice(INTERESTING) & ((1 << (8 * width)) - 1))
    elif kind == 3:  # truncate
        del b[rng.randrange(len(b)):]
    elif kind == 4:  # delete a slice
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 64)]
    elif kind == 5:  # insert random bytes
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    else:  # copy a slice elsewhere (duplicates records)
        i, j = rng.randrange(len(b)), rng.randrange(len(b))
        n = rng.randint(1, 128)
        chunk = b[i:i + n]
        b[j:j + len(chunk)] = chunk
    return bytes(b)


def check_consistent(info, size: int) -> str | None:
    """Invariants every successfully loaded file must satisfy."""
    if info.version not in (2, 3) or info.alignment & (info.alignment - 1) or info.data_offset % info.alignment:
        return "bad header fields"
    spans = []
    for t in info.tensors:
        if t.offset % info.alignment or info.data_offset + t.offset + t.nbytes > size:
            return f"tensor {t.name!r} outside the file"
        if not 1 <= len(t.shape) <= 4 or min(t.shape) < 1:
            return f"tensor {t.name!r} bad shape"
        spans.append((t.offset, t.offset + t.nbytes))
    spans.sort()
    for (a0, a1), (b0, _) in zip(spans, spans[1:]):
        if a1 > b0:
            return "overlapping tensors loaded"
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mutations", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--file-every", type=int, default=25, help="also parse every n-th input via a file (mmap)")
    args = ap.parse_args()

    g = valid_small()
    seed = g.build()
    fields = g.fields
    inspect_bytes(seed)  # warm up (imports, first allocations) before measuring the baseline
    tmpdir = tempfile.mkdtemp(prefix="gguf-fuzz-")
    path = os.path.join(tmpdir, "m.gguf")

    limit = vm_size() + ALLOC_SLACK
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))

    try:  # the limit must bite: an allocation of twice the slack fails
        bytearray(2 * ALLOC_SLACK)
        print(json.dumps({"failures": ["RLIMIT_AS not effective"]}))
        return 1
    except MemoryError:
        pass

    rng = random.Random(args.seed)
    stats = {"loaded": 0, "rejected": 0, "mutations": 0, "truncations": 0, "file_size": len(seed),
             "via_file": 0, "max_seconds": 0.0, "failures": [], "rlimit_as": limit}

    def run_one(data: bytes, label: str, via_file: bool) -> None:
        if via_file:
            with open(path, "wb") as f:
                f.write(data)
            stats["via_file"] += 1
        t0 = time.perf_counter()
        try:
            if via_file:
                info = inspect(path)
            else:
                info = inspect_bytes(data)
            problem = check_consistent(info, len(data))
            if problem:
                stats["failures"].append(f"{label}: loaded but {problem}")
            stats["loaded"] += 1
        except qwen3moe.GGUFError as e:
            if not str(e).startswith("GGUF: "):
                stats["failures"].append(f"{label}: bad message {str(e)[:200]!r}")
            stats["rejected"] += 1
        except BaseException as e:  # MemoryError (RLIMIT hit), UnicodeDecodeError, ...
            stats["failures"].append(f"{label}: {type(e).__name__}: {str(e)[:200]} input={data[:64].hex()}")
        dt = time.perf_counter() - t0
        stats["max_seconds"] = max(stats["max_seconds"], dt)
        if dt > 1.0:
            stats["failures"].append(f"{label}: took {dt:.3f} s")

    for n in range(len(seed)):
        run_one(seed[:n], f"truncation {n}", via_file=False)
        stats["truncations"] += 1
    for k in range(args.mutations):
        run_one(mutate(rng, seed, fields), f"mutation {k}", via_file=(k % args.file_every == 0))
        stats["mutations"] += 1
        if len(stats["failures"]) > 20:
            break
    os.unlink(path) if os.path.exists(path) else None
    os.rmdir(tmpdir)
    print(json.dumps(stats))
    return 0 if not stats["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
