#!/usr/bin/env python3
"""Where the heap is at its peak, from a dhat-heap.json written by `vestnik --features dhat-heap`.

Prints the bytes live at the global maximum (dhat's t-gmax) per allocation site, largest first,
each with its first frames outside the allocator and the standard library, and the total divided
by --per (the number of sockets, to read bytes per socket).

Usage: dhat-summary.py dhat-heap.json [--per 10000] [--top 15] [--frames 4]
"""
import argparse
import json
import re

SKIP = re.compile(r"^(alloc::|core::|std::|dhat::|<alloc::|<core::|<std::|<dhat::|__rust|hashbrown::raw::|<hashbrown::|\[root\])")


def frame_name(entry):
    # "0x1234: crate::module::func (src/file.rs:12:5)" -> "crate::module::func (file.rs:12)"
    m = re.match(r"^(?:0x[0-9a-f]+: )?(.*?)(?: \((.*?)(?::\d+)?\))?$", entry)
    if not m:
        return entry
    func, loc = m.group(1), m.group(2)
    func = re.sub(r"::h[0-9a-f]{16}$", "", func)
    if loc:
        loc = loc.split("/")[-1]
        return f"{func} ({loc})"
    return func


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--per", type=int, default=0, help="divide by this many (sockets)")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--frames", type=int, default=4)
    args = ap.parse_args()
    with open(args.file) as f:
        d = json.load(f)
    ftbl = d["ftbl"]
    sites = []
    for pp in d["pps"]:
        if pp.get("gb", 0) <= 0:
            continue
        frames = [frame_name(ftbl[i]) for i in pp["fs"]]
        kept = [f for f in frames if not SKIP.match(f)]
        sites.append((pp["gb"], pp["gbk"], kept[: args.frames] or frames[:1]))
    sites.sort(key=lambda s: -s[0])
    total = sum(s[0] for s in sites)
    blocks = sum(s[1] for s in sites)
    per = args.per
    print(f"live at the peak: {total:,} bytes in {blocks:,} blocks", end="")
    print(f"; {total / per:,.0f} bytes and {blocks / per:.1f} blocks per socket" if per else "")
    for gb, gbk, frames in sites[: args.top]:
        share = f"{gb / per:8,.0f} B/socket" if per else f"{gb:12,} B"
        print(f"{share}  {gbk:>8,} blocks  {frames[0]}")
        for f in frames[1:]:
            print(f"{'':>35}{f}")


if __name__ == "__main__":
    main()
