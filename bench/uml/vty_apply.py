#!/usr/bin/env python3
"""vty_apply.py <pathspace> <file>: applies FRR configuration lines straight to the daemons' vty
sockets (/run/frr/<pathspace>/{zebra,bgpd}.vty), the way vtysh forwards them, and prints
{"ms": ..., "lines": ..., "errors": [...]} as JSON.

The time excludes the interpreter start: it stands for an agent that keeps the two sockets
open and sends only the lines that changed (the proposed replacement of frr-reload.py on the
hot path). Top-level `vrf` blocks go to zebra, `router bgp` blocks (and their `no`) to bgpd.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nl import Vty  # noqa: E402


def blocks(text):
    cur = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("!"):
            continue
        if not raw.startswith(" "):
            if line in ("exit", "exit-vrf") and cur is not None:
                cur[1].append(line)
                yield cur
                cur = None
                continue
            if cur is not None:
                yield cur
            daemon = "zebra" if line.startswith(("vrf ", "no vrf ")) else "bgpd"
            cur = (daemon, [line])
            if line.startswith("no "):
                yield cur
                cur = None
        elif cur is not None:
            cur[1].append(line.strip())
    if cur is not None:
        yield cur


def main():
    ps, path = sys.argv[1], sys.argv[2]
    text = open(path).read()
    t0 = time.monotonic()
    vty = {d: Vty(f"/run/frr/{ps}/{d}.vty") for d in ("zebra", "bgpd")}
    for v in vty.values():
        v.cmd("configure terminal")
    n, errors = 0, []
    for daemon, lines in blocks(text):
        for line in lines:
            st, out = vty[daemon].cmd(line)
            n += 1
            if st != 0:
                errors.append(f"{daemon}: {line}: {out.strip()}")
        vty[daemon].cmd("end")
        vty[daemon].cmd("configure terminal")
    for v in vty.values():
        v.cmd("end")
        v.close()
    ms = (time.monotonic() - t0) * 1000
    print(json.dumps({"ms": round(ms, 1), "lines": n, "errors": errors}))


if __name__ == "__main__":
    main()
