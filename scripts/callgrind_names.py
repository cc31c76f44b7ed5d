"""What callgrind-split.py and callgrind-lines.py share: naming the host's
JIT-compiled guest code from its perf map, and the frames a dump taken
while the host runs lists with inclusive counts.

    names = GuestNames("/tmp/perf-PID.map")
    names.of("???:0x3d38b9be")  # "guest hello_http::main::h…", or None
"""
import bisect, re

# A dump taken while the host runs lists the frames on each thread's stack
# (thread start, the worker loop) with their inclusive counts: left out.
ACTIVE = re.compile(r"clone\.S:clone|:start_thread|::thread_start|call_once\{\{vtable\.shim\}\}|::__rust_begin_short_backtrace")


class GuestNames:
    """The guest functions of a perf map (MNVKD_PERFMAP=1)."""

    def __init__(self, perfmap):
        self.jit = []
        try:
            for line in open(perfmap):
                addr, size, name = line.split(" ", 2)
                self.jit.append((int(addr, 16), int(size, 16), name.strip()))
        except FileNotFoundError:
            # A host built before MNVKD_PERFMAP: its guest code is counted, unnamed.
            pass
        self.jit.sort()
        self.starts = [start for start, _, _ in self.jit]

    def of(self, where):
        """`guest NAME` for callgrind's `???:0xADDR` inside guest code
        (`guest ?` when the map does not cover it), None for any other place."""
        j = re.match(r"\?\?\?:0x([0-9a-f]+)", where)
        if not j:
            return None
        addr = int(j.group(1), 16)
        i = bisect.bisect_right(self.starts, addr) - 1
        inside = i >= 0 and addr < self.jit[i][0] + self.jit[i][1]
        return "guest " + (self.jit[i][2] if inside else "?")
