#!/usr/bin/env python3
"""Builds the benchmark tables of docs/benchmarks.md from JSON rows, as
`headinfer bench -o json` and `bench/peers/hf_bench.py -o json` write them.

  python3 bench/tables.py memory  rows*.json     # weights / KV on GPU / other / total GPU / KV in host RAM
  python3 bench/tables.py maxctx  rows*.json     # longest context under a budget, and what limits it
  python3 bench/tables.py latency rows*.json     # prefill and decode against context, floor as a column
  python3 bench/tables.py repeat first.json second.json   # the same command run twice: do they agree?
  python3 bench/tables.py ratio hf.json engine.json...    # prefill tok/s against HF's, context by context

Row files may also be logs of a run (console text, then the JSON rows).

Rows are grouped into configurations by `label` if a row has one, else engine +
offload + budget (as bench/plot_bench.py does). A row whose status is not "ok" (a
plan that does not fit, a run killed for host memory) stays in the memory and
latency tables with its reason, so a configuration that cannot reach a context says
so instead of vanishing. GiB are 2^30 bytes.

Where a figure is not measured it is derived, and the table says how: for the HF rows
the weights and the KV bytes per token come from a headinfer row of the same model
(the same weights, exported), "KV on GPU" is the whole cache for HF's GPU cache and
about two layers for its offloaded cache (the layer in use and the one prefetched);
"other" is the measured driver peak minus weights and KV on GPU (activations,
workspaces, the CUDA context, page tables of pinned memory).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_bench import load_rows, read_json_rows, series_label, fmt_tokens  # noqa: E402

GIB = float(1 << 30)


def gib(v):
    return "" if v is None else f"{v / GIB:.2f}"


def num(v, digits=0):
    return "" if v is None else f"{v:,.{digits}f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def ok(r):
    return r.get("status", "ok") == "ok"


def short_status(r):
    """A failed row's reason in a few words for a table cell."""
    s = str(r.get("status", ""))
    low = s.lower()
    if "killed" in low:
        return "killed (host RAM)" if "oom" in low or "memory" in low else "killed"
    if "needs" in low or "does not fit" in low or "out of memory" in low:
        return "does not fit"
    return "failed"


def model_facts(rows):
    """Per model: weight bytes on the GPU and KV bytes per token, from headinfer rows."""
    facts = {}
    for r in rows:
        if not ok(r) or not str(r.get("engine", "")).startswith("headinfer"):
            continue
        kv = (r.get("resident_kv_bytes") or 0) + (r.get("offloaded_kv_bytes") or 0)
        w = r.get("plan_weight_bytes") or r.get("weight_read_bytes")
        if w and kv and r.get("context"):
            facts.setdefault(r["model"], (w, kv / r["context"]))
    return facts


def memory_rows(rows, layers):
    facts = model_facts(rows)
    out = []
    for r in sorted(rows, key=lambda r: (r["context"], series_label(r))):
        chunk = num(r.get("chunk")) if r.get("chunk") else ""
        if not ok(r):
            out.append([series_label(r), fmt_tokens(r["context"]), chunk, r.get("fill", ""), "", "", "", "", "", "", "",
                        f"{short_status(r)}: {r.get('status', '')}"])
            continue
        engine = str(r.get("engine", ""))
        peak = r.get("gpu_peak_bytes")
        if engine.startswith("headinfer"):
            weights = r.get("plan_weight_bytes") or r.get("weight_read_bytes")
            kv_gpu = r.get("resident_kv_bytes")
            kv_host = r.get("offloaded_kv_bytes")
            how = "measured peak; split from the plan"
        else:
            f = facts.get(r.get("model"))
            if f is None:
                continue
            weights, per_token = f
            kv_all = per_token * r["context"]
            offloaded = r.get("offload") == "offloaded"
            kv_gpu = kv_all * 2 / layers if offloaded else kv_all
            kv_host = kv_all if offloaded else 0
            how = "measured peak; KV split derived"
        other = peak - weights - kv_gpu if peak is not None and weights is not None and kv_gpu is not None else None
        out.append([series_label(r), fmt_tokens(r["context"]), chunk, r.get("fill", ""), gib(weights), gib(kv_gpu),
                    gib(other), gib(peak), gib(kv_host), gib(r.get("host_peak_rss_bytes")), how])
    return table(["configuration", "context", "chunk", "KV from", "weights GiB", "KV on GPU GiB", "other GPU GiB",
                  "total GPU GiB (driver peak)", "KV in host RAM GiB", "host RSS peak GiB", "source"], out)


def maxctx_rows(rows):
    out = []
    for r in rows:
        if "max_context_limit" not in r:
            continue
        out.append([r.get("model", ""), gib(r.get("gpu_budget_bytes")), num(r.get("context")),
                    fmt_tokens(r["context"]) if r.get("context") else "", r.get("max_context_limit", ""),
                    num(r.get("slabs_offloaded")), gib(r.get("gpu_peak_bytes")), gib(r.get("predicted_host_bytes")),
                    num(r.get("decode_ms"), 0), r.get("status", "")])
    return table(["model", "budget GiB", "max context (tokens)", "", "limited by", "offloaded slabs",
                  "GPU peak GiB", "host KV GiB", "decode ms/token", "run"], out)


def latency_rows(rows):
    """Two tables against context: decode ms/token per configuration, then each
    headinfer configuration's transfer floor (the floor beside its time); and prefill
    tokens/s. A failed row's cell says why."""
    configs = sorted({series_label(r) for r in rows})
    contexts = sorted({r["context"] for r in rows})
    by = {(series_label(r), r["context"]): r for r in rows}
    with_floor = sorted({series_label(r) for r in rows if r.get("decode_floor_ms")})
    with_prefill = sorted({series_label(r) for r in rows if r.get("prefill_tps")})

    def cell(c, ctx, key, digits):
        r = by.get((c, ctx))
        if r is None:
            return ""
        if not ok(r):
            return short_status(r)
        if key == "prefill_tps" and not r.get(key) and r.get("fill") == "synthetic":
            return "(synthetic)"
        lo, hi = r.get(key + "_min"), r.get(key + "_max")
        if key == "decode_ms" and lo is not None and hi is not None and num(lo, digits) != num(hi, digits):
            # The range beside the median: a peer whose first repetition is slow shows it.
            return f"{num(r.get(key), digits)} ({num(lo, digits)}-{num(hi, digits)})"
        return num(r.get(key), digits)

    decode = [[fmt_tokens(ctx)] + [cell(c, ctx, "decode_ms", 1) for c in configs] +
              [cell(c, ctx, "decode_floor_ms", 1) for c in with_floor] for ctx in contexts]
    prefill = [[fmt_tokens(ctx)] + [cell(c, ctx, "prefill_tps", 0) for c in with_prefill] for ctx in contexts
               if any(by.get((c, ctx), {}).get("prefill_tps") for c in with_prefill)]
    return ("decode ms/token (median over repetitions, their range in brackets)\n\n" +
            table(["context"] + configs + [f"floor: {c}" for c in with_floor], decode) +
            "\n\nprefill tokens/s (median over repetitions)\n\n" + table(["context"] + with_prefill, prefill))


def spread(r, key):
    """(median, min, max) of a row's metric, or None where the row has none."""
    v = r.get(key)
    if v is None:
        return None
    lo, hi = r.get(key + "_min"), r.get(key + "_max")
    return v, v if lo is None else lo, v if hi is None else hi


def fmt_spread(t, digits=0):
    """(median, min, max) as "median (min-max)"."""
    return f"{num(t[0], digits)} ({num(t[1], digits)}-{num(t[2], digits)})"


def repeat_rows(first, second):
    """Two runs of one command, row by row: each metric's median and range in both runs,
    and whether they agree. They agree when the two medians differ by no more than the
    spread the tool reports for the metric (the range, max - min over the repetitions)
    in either run: the narrower of the two ranges bounds the difference. Returns the
    table and whether all agree."""
    by2 = {(series_label(r), r["context"]): r for r in second}
    out, agree_all = [], True
    for r1 in first:
        r2 = by2.get((series_label(r1), r1["context"]))
        if r2 is None:
            continue
        for key, digits in (("prefill_tps", 0), ("decode_ms", 2)):
            a, b = spread(r1, key), spread(r2, key)
            if a is None or b is None:
                continue
            diff = abs(a[0] - b[0])
            bound = min(a[2] - a[1], b[2] - b[1])
            agree = diff <= bound
            agree_all &= agree
            rel = f" ({100 * diff / a[0]:.2f}%)" if a[0] else ""
            out.append([series_label(r1), fmt_tokens(r1["context"]), key, fmt_spread(a, digits), fmt_spread(b, digits),
                        num(diff, digits) + rel,
                        num(bound, digits), "yes" if agree else "NO"])
    if not out:
        sys.exit("repeat: no configuration and context appears in both files")
    text = table(["configuration", "context", "metric", "first run: median (range)", "second run: median (range)",
                  "difference of medians", "narrower range", "agree"], out)
    return text + ("\n\nall agree" if agree_all else "\n\nsome do not agree"), agree_all


def ratio_rows(hf, engines, want=1.1):
    """Prefill tokens/s of each engine run (a list of (name, rows)) against HF's rows,
    context by context: medians over the repetitions, their ranges, and whether the
    ratio of medians reaches `want`. Returns the table and whether every one does."""
    base = {r["context"]: r for r in hf if r.get("prefill_tps")}
    out, all_ok = [], True
    for name, rows in engines:
        for r in sorted(rows, key=lambda r: r["context"]):
            h = base.get(r["context"])
            a = spread(r, "prefill_tps")
            if h is None or a is None:
                continue
            b = spread(h, "prefill_tps")
            x = a[0] / b[0]
            all_ok &= x >= want
            out.append([name, fmt_tokens(r["context"]), fmt_spread(a), fmt_spread(b), f"{x:.3f}",
                        "yes" if x >= want else "no"])
    if not out:
        sys.exit("ratio: no context has prefill rows both from HF and from an engine file")
    text = table(["engine run", "context", "prefill tok/s: median (range)", "HF: median (range)", "ratio",
                  f">= {want}x"], out)
    return text, all_ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=["memory", "maxctx", "latency", "repeat", "ratio"])
    ap.add_argument("rows", nargs="+", help="JSON row files")
    ap.add_argument("--layers", type=int, default=32,
                    help="layers of the model, for the share of HF's offloaded cache on the GPU (default 32)")
    args = ap.parse_args()
    if args.table == "maxctx":
        rows = []
        for p in args.rows:
            data = read_json_rows(p)
            if not isinstance(data, list):
                sys.exit(f"{p}: expected a JSON list of rows, got {type(data).__name__}")
            rows += [r for r in data if isinstance(r, dict)]
        print(maxctx_rows(rows))
        return
    if args.table == "ratio":
        if len(args.rows) < 2:
            sys.exit("ratio: expected HF's rows, then one or more engine row files")
        engines = [(os.path.splitext(os.path.basename(p))[0], load_rows([p])) for p in args.rows[1:]]
        text, _ = ratio_rows(load_rows(args.rows[:1]), engines)
        print(text)
        return
    if args.table == "repeat":
        if len(args.rows) != 2:
            sys.exit("repeat: expected two JSON files, the first run and the second")
        text, agree = repeat_rows(load_rows(args.rows[:1]), load_rows(args.rows[1:]))
        print(text)
        sys.exit(0 if agree else 1)
    rows = load_rows(args.rows, keep_failed=True)
    if not any(ok(r) for r in rows):
        sys.exit("no rows with status ok in " + ", ".join(args.rows))
    print(memory_rows(rows, args.layers) if args.table == "memory" else latency_rows(rows))


if __name__ == "__main__":
    main()
