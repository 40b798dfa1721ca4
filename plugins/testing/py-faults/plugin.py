"""py-faults: a Python tool that misbehaves on request, for the limit
tests. `{"mode": ...}`:

- `ok`: answers `ok` (the plugin still serves after a fault);
- `raise`: raises RuntimeError;
- `spin`: loops forever in the interpreter (fuel or the time limit ends it);
- `alloc`: keeps allocating (the memory limit ends it);
- `sleep`: sleeps for a minute in a host call (the time limit ends it);
- `exit`: calls sys.exit(3);
- `recurse`: recurses without end (Python's own recursion limit).
"""

import sys
import time

from prx_pdk import tool


def _recurse(n):
    return _recurse(n + 1) + 1


@tool(name="py_faults", description="Misbehaves on request")
def faults(args):
    mode = args.get("mode", "ok")
    if mode == "ok":
        return "ok"
    if mode == "raise":
        raise RuntimeError("asked to fail")
    if mode == "spin":
        n = 0
        while True:
            n += 1
    if mode == "alloc":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if mode == "sleep":
        time.sleep(60)
        return "slept"
    if mode == "exit":
        sys.exit(3)
    if mode == "recurse":
        return _recurse(0)
    raise ValueError(f"unknown mode {mode!r}")
