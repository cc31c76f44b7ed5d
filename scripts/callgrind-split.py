#!/usr/bin/env python3
"""Splits callgrind dumps of the host into the guest's JIT code, libc and the
host, per unit of work (a request, a round trip), for scripts/bench-instr and
scripts/bench-pipes.

    callgrind-split.py UNIT LABEL PERFMAP TOP ANNOTATED_PATTERN COUNT...

ANNOTATED_PATTERN holds %d for the run (1, 2, ...): each file is the
`callgrind_annotate --auto=no --threshold=100` output of one run, COUNT that
run's units of work. Prints each run's instructions per unit, then for the
run with the fewest the split and its TOP costliest functions. PERFMAP is
the host's /tmp/perf-PID.map (MNVKD_PERFMAP=1), which names guest code.
"""
import collections, os, re, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from callgrind_names import ACTIVE, GuestNames  # noqa: E402

unit, label, perfmap, top, annotated = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
counts = [int(c) for c in sys.argv[6:]]
names = GuestNames(perfmap)


def split(path):
    """(total, {guest, libc, host}, {function: count}) of one dump."""
    parts, functions, total = collections.Counter(), collections.Counter(), 0
    for line in open(path):
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if not m:
            continue
        ir, where = int(m.group(1).replace(",", "")), m.group(2)
        if "PROGRAM TOTALS" in where:
            total = ir
            continue
        if ACTIVE.search(where.split(" [")[0]):
            continue
        name = names.of(where)
        if name:
            parts["guest"] += ir
        else:
            name = re.sub(r"\s*\[[^\]]*\]$", "", where.split(":", 1)[-1])
            if "libc.so" in where:
                parts["libc"] += ir
        functions[name[:120]] += ir
    parts["host"] = total - parts["guest"] - parts["libc"]
    return total, parts, functions


runs = [(split(annotated % (i + 1)), count) for i, count in enumerate(counts)]
per = [total / count for (total, _, _), count in runs]
(total, parts, functions), count = runs[per.index(min(per))]
print(f"{label}: runs=" + ",".join(f"{p:.0f}" for p in per)
      + f" min: instructions_per_{unit}={total / count:.0f} "
      + " ".join(f"{k}={parts[k] / count:.0f}" for k in ("guest", "libc", "host"))
      + f" ({unit}s={count})")
for name, ir in functions.most_common(top):
    print(f"  {ir / count:8.0f}  {name}")
