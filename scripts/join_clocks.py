#!/usr/bin/env python3
"""Join a benchmark's timed lines to the GPU clock and power read beside it.

Usage: join_clocks.py BENCH_LOG CLOCKS_CSV
BENCH_LOG lines end in two wall-clock times (ms since the epoch: the line's start and
end); CLOCKS_CSV is nvidia-smi's `timestamp,clocks.sm,power.draw` (csv, noheader,
nounits). Each timed line is printed with the mean SM clock and power of the samples
taken in the second half of its span (the first half warms the GPU to a steady state).
"""
import datetime
import sys


def samples(path):
    out = []
    for line in open(path):
        parts = [p.strip() for p in line.split(',')]
        if len(parts) < 3:
            continue
        try:
            t = datetime.datetime.strptime(parts[0], '%Y/%m/%d %H:%M:%S.%f')
            out.append((t.timestamp() * 1000.0, float(parts[1]), float(parts[2])))
        except ValueError:
            continue
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    clocks = samples(sys.argv[2])
    for line in open(sys.argv[1]):
        parts = line.split()
        try:
            t0, t1 = int(parts[-2]), int(parts[-1])
        except (IndexError, ValueError):
            print(line.rstrip())
            continue
        mid = (t0 + t1) / 2
        inside = [(c, p) for t, c, p in clocks if mid <= t <= t1]
        text = ' '.join(parts[:-2])
        if inside:
            c = sum(x[0] for x in inside) / len(inside)
            p = sum(x[1] for x in inside) / len(inside)
            print(f'{text}   {c:5.0f} MHz {p:4.0f} W ({len(inside)} samples)')
        else:
            print(f'{text}   (no clock samples)')


if __name__ == '__main__':
    main()
