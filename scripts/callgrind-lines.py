#!/usr/bin/env python3
"""Cache lines a request touches, from a callgrind dump taken with
--cache-sim=yes, split into the guest's JIT code, wasmtime, the host's own
code and the rest; for scripts/bench-cache.

    callgrind-lines.py DUMP PERFMAP TOP L2_KIB

The unit is one call of libc's `send` (hello-http answers each request with
one). Prints per request: instructions, first-level misses (D1: about every
line touched, once the state of many processes no longer fits in 32 KiB)
and last-level misses (LL, simulated at the size of one core's L2, L2_KIB:
the lines that come from the shared L3 or memory). PERFMAP is the host's
/tmp/perf-PID.map (MNVKD_PERFMAP=1), which names guest code.
"""
import collections, os, re, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from callgrind_names import ACTIVE, GuestNames  # noqa: E402

dump, perfmap, top, l2_kib = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
EVENTS = ["Ir", "D1mr", "D1mw", "DLmr", "DLmw"]
names = GuestNames(perfmap)


def sends(path):
    """Calls of the function named exactly `send` in a raw callgrind dump."""
    names, calls, callee = {}, 0, None
    for line in open(path):
        m = re.match(r"c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if m:
            if m.group(2):
                names[m.group(1)] = m.group(2)
            callee = names.get(m.group(1)) if line.startswith("cfn=") else None
            continue
        m = re.match(r"calls=(\d+)", line)
        if m and callee == "send":
            calls += int(m.group(1))
    return calls


requests = sends(dump)
if requests == 0:
    sys.exit("callgrind-lines: no call of `send` in the dump: no request was answered")
out = subprocess.run(
    ["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100",
     "--show=" + ",".join(EVENTS), dump],
    capture_output=True, text=True, check=True).stdout
number = r"([\d,]+|\.)\s*(?:\([^)]*\))?\s+"
row = re.compile(r"\s*" + number * len(EVENTS) + r"(.*)$")
parts = collections.defaultdict(lambda: [0] * len(EVENTS))
functions = collections.defaultdict(lambda: [0] * len(EVENTS))
for line in out.splitlines():
    m = row.match(line)
    if not m:
        continue
    values = [0 if v == "." else int(v.replace(",", "")) for v in m.groups()[:-1]]
    where = m.group(len(EVENTS) + 1)
    if "PROGRAM TOTALS" in where or ACTIVE.search(where.split(" [")[0]):
        continue
    name = names.of(where)
    if name:
        part = "guest"
    else:
        name = re.sub(r"\s*\[[^\]]*\]$", "", where.split(":", 1)[-1])
        part = ("libc" if "libc.so" in where
                else "wasmtime" if "wasmtime" in name.split("<")[0].split("::")[0] or name.startswith("<wasmtime")
                else "host" if "mnvkd_host" in name
                else "other (std, mimalloc, mio)")
    for k, v in enumerate(values):
        parts[part][k] += v
        functions[name[:110]][k] += v

print(f"requests (calls of send): {requests}")
print(f"{'per request':28} {'instr':>7} {'D1 lines':>9} {'LL lines':>9}   (LL = a {l2_kib} KiB L2)")
totals = [0] * len(EVENTS)
for part, v in sorted(parts.items(), key=lambda kv: -(kv[1][3] + kv[1][4])):
    totals = [a + b for a, b in zip(totals, v)]
    print(f"{part:28} {v[0] / requests:7.0f} {(v[1] + v[2]) / requests:9.1f} {(v[3] + v[4]) / requests:9.1f}")
print(f"{'all':28} {totals[0] / requests:7.0f} {(totals[1] + totals[2]) / requests:9.1f} {(totals[3] + totals[4]) / requests:9.1f}")
if top:
    print(f"the {top} functions with the most LL lines a request:")
    for name, v in sorted(functions.items(), key=lambda kv: -(kv[1][3] + kv[1][4]))[:top]:
        print(f"  {(v[3] + v[4]) / requests:5.1f}  {name}")
