#!/usr/bin/env python3
"""Plots benchmark rows against context length, as SVG files written by hand (no
plotting library needed).

Input: JSON row files as `headinfer bench -o json` and `bench/peers/hf_bench.py -o json`
write them (a list of objects with at least `context` and some of `prefill_tps`,
`decode_ms`, `gpu_peak_bytes`). Rows are grouped into series by a label: `label` if a
row has one, else engine + cache + budget. Rows whose status is not "ok" are skipped.

  python3 bench/plot_bench.py rows1.json rows2.json -o docs/plots --title "H200, 2026-12-01"

writes prefill.svg (tokens/s), decode.svg (ms/token, log scale) and memory.svg (GPU
peak, GiB); the x axis (context) is log scale everywhere.
"""
import argparse
import json
import math
import os
import sys

METRICS = {
    "prefill": ("prefill_tps", "prefill tokens/s", False, 1.0),
    "decode": ("decode_ms", "decode ms/token", True, 1.0),
    "memory": ("gpu_peak_bytes", "GPU peak, GiB", False, 1.0 / (1 << 30)),
}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]
W, H = 760, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 250, 40, 50


def series_label(row):
    if row.get("label"):
        return row["label"]
    parts = [row.get("engine", "?")]
    for key in ("cache", "offload"):
        if row.get(key) and str(row[key]) not in parts[0]:  # hf_bench's engine names its cache
            parts.append(str(row[key]))
    if row.get("gpu_budget_bytes"):
        parts.append(f"{row['gpu_budget_bytes'] / (1 << 30):.0f} GiB")
    return " ".join(parts)


def read_json_rows(path):
    """The JSON of a row file, or of a log holding one: a run's console output, the
    rows from the first line that starts with '[' (progress lines may come before)."""
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError:
        pass
    at = 0 if text.startswith("[") else text.find("\n[") + 1
    if at == 0 and not text.startswith("["):
        sys.exit(f"{path}: no JSON rows (neither a JSON file nor a log with a line starting with '[')")
    try:
        return json.JSONDecoder().raw_decode(text[at:])[0]
    except ValueError as e:
        sys.exit(f"{path}: the rows from line '{text[at:at + 40]}...' are not JSON: {e}")


def load_rows(paths, keep_failed=False):
    """Rows of the JSON files; only those whose status is "ok" unless keep_failed."""
    rows = []
    for p in paths:
        data = read_json_rows(p)
        if not isinstance(data, list):
            sys.exit(f"{p}: expected a JSON list of rows, got {type(data).__name__}")
        for i, r in enumerate(data):
            if not isinstance(r, dict) or "context" not in r:
                sys.exit(f"{p}: row {i}: expected an object with a 'context' field")
            if keep_failed or r.get("status", "ok") == "ok":
                rows.append(r)
    return rows


def fmt_tokens(n):
    if n >= (1 << 20) and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}K"
    return str(n)


def nice_ticks(lo, hi, log):
    if log:
        ticks, e = [], math.floor(math.log10(lo))
        while 10 ** e <= hi * 1.0001:
            for m in (1, 2, 5):
                v = m * 10 ** e
                if lo * 0.9999 <= v <= hi * 1.0001:
                    ticks.append(v)
            e += 1
        return ticks or [lo, hi]
    span = hi - lo or abs(hi) or 1.0
    step = 10 ** math.floor(math.log10(span / 5))
    for m in (1, 2, 5, 10):
        if span / (step * m) <= 6:
            step *= m
            break
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 2) if start + i * step <= hi * 1.0001]


def plot(series, metric, title, path):
    key, ylabel, ylog, scale = METRICS[metric]
    pts = {name: sorted((r["context"], r[key] * scale) for r in rows if r.get(key) is not None and r[key] > 0)
           for name, rows in series.items()}
    pts = {k: v for k, v in pts.items() if v}
    if not pts:
        return False
    xs = [x for v in pts.values() for x, _ in v]
    ys = [y for v in pts.values() for _, y in v]
    xlo, xhi = min(xs) / 1.2, max(xs) * 1.2
    if ylog:
        ylo, yhi = min(ys) / 1.5, max(ys) * 1.5
    else:
        ylo, yhi = 0.0, max(ys) * 1.1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x):
        return LEFT + pw * (math.log(x) - math.log(xlo)) / (math.log(xhi) - math.log(xlo))

    def sy(y):
        if ylog:
            return TOP + ph * (1 - (math.log(y) - math.log(ylo)) / (math.log(yhi) - math.log(ylo)))
        return TOP + ph * (1 - (y - ylo) / (yhi - ylo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="12">', f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{LEFT}" y="22" font-size="14">{title}: {ylabel}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>']
    for x in sorted(set(xs)):
        out.append(f'<line x1="{sx(x):.1f}" y1="{TOP + ph}" x2="{sx(x):.1f}" y2="{TOP + ph + 5}" stroke="black"/>')
        out.append(f'<text x="{sx(x):.1f}" y="{TOP + ph + 18}" text-anchor="middle">{fmt_tokens(x)}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">context (tokens, log scale)</text>')
    for y in nice_ticks(max(ylo, 1e-9), yhi, ylog):
        if ylo <= y <= yhi:
            out.append(f'<line x1="{LEFT}" y1="{sy(y):.1f}" x2="{LEFT + pw}" y2="{sy(y):.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{y:g}</text>')
    for i, (name, p) in enumerate(sorted(pts.items())):
        c = COLORS[i % len(COLORS)]
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in p)
        out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"/>')
        out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{c}"/>' for x, y in p]
        ly = TOP + 14 + 18 * i
        out.append(f'<line x1="{LEFT + pw + 10}" y1="{ly - 4}" x2="{LEFT + pw + 30}" y2="{ly - 4}" stroke="{c}" '
                   f'stroke-width="2"/>')
        out.append(f'<text x="{LEFT + pw + 35}" y="{ly}">{name}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="JSON row files")
    ap.add_argument("-o", "--out-dir", default=".", help="folder for the SVG files")
    ap.add_argument("--title", default="headinfer bench", help="title prefix")
    args = ap.parse_args()
    rows = load_rows(args.rows)
    if not rows:
        sys.exit("no rows with status ok in " + ", ".join(args.rows))
    series = {}
    for r in rows:
        series.setdefault(series_label(r), []).append(r)
    os.makedirs(args.out_dir, exist_ok=True)
    for metric in METRICS:
        path = os.path.join(args.out_dir, metric + ".svg")
        if plot(series, metric, args.title, path):
            print("wrote", path)


if __name__ == "__main__":
    main()
