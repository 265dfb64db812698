"""Summarise `ncu --metrics regex:smsp__pcsamp_warps_issue_stalled_...` output (the ncudecode step
of scripts/device-cuda.sh): per kernel launch, its duration, instructions, and the shares of the
warp-state PC samples by stall reason, largest first. `python3 bench/ncu_stalls.py ncu-decode.txt`."""
import re
import sys


def main() -> None:
    kern = None
    rows: dict = {}
    order = []
    units: dict = {}  # metric -> unit column (gpu__time_duration: usecond, nsecond, ...)
    for line in open(sys.argv[1], errors="replace"):
        if re.match(r"\s+\S.*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", line):  # a launch's header
            name = line.strip().split("(")[0]
            kern = f"{len(order)}:{name[-40:]}"
            order.append(kern)
            rows[kern] = {}
            continue
        if kern is None:
            continue
        parts = line.split()
        if len(parts) >= 3 and (parts[0].startswith("smsp__") or parts[0].startswith("gpu__")):
            try:
                rows[kern][parts[0]] = float(parts[-1].replace(",", ""))
                units[parts[0]] = parts[-2]
            except ValueError:
                pass
    for k in order:
        r = rows[k]
        st = {re.sub(r"^smsp__(pcsamp|average)_warps_issue_stalled_|_per_issue_active\.ratio$", "", n): v
              for n, v in r.items() if "stalled" in n and not n.endswith("_not_issued")}
        tot = sum(st.values()) or 1.0
        top = sorted(st.items(), key=lambda kv: -kv[1])[:8]
        print(f"{k}: {r.get('gpu__time_duration.sum', 0):.2f} {units.get('gpu__time_duration.sum', '')}, "
              f"{r.get('smsp__inst_executed.sum', 0):.0f} warp instr, "
              f"{tot:.0f} samples")
        print("   " + ", ".join(f"{n} {100 * v / tot:.0f}%" for n, v in top))


if __name__ == "__main__":
    main()
