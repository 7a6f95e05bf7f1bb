#!/usr/bin/env python3
"""Builds the benchmark tables of docs/benchmarks.md from JSON rows, as
`headinfer bench -o json` and `bench/peers/hf_bench.py -o json` write them.

  python3 bench/tables.py memory  rows*.json     # weights / KV on GPU / other / total GPU / KV in host RAM
  python3 bench/tables.py maxctx  rows*.json     # longest context under a budget, and what limits it
  python3 bench/tables.py latency rows*.json     # prefill and decode against context, floor as a column

Rows are grouped into configurations by `label` if a row has one, else engine +
offload + budget (as bench/plot_bench.py does). Only rows whose status is "ok" are
used, except in maxctx. GiB are 2^30 bytes.

Where a figure is not measured it is derived, and the table says how: for the HF rows
the weights and the KV bytes per token come from a headinfer row of the same model
(the same weights, exported), "KV on GPU" is the whole cache for HF's GPU cache and
about two layers for its offloaded cache (the layer in use and the one prefetched);
"other" is the measured driver peak minus weights and KV on GPU (activations,
workspaces, the CUDA context, page tables of pinned memory).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_bench import load_rows, series_label, fmt_tokens  # noqa: E402

GIB = float(1 << 30)


def gib(v):
    return "" if v is None else f"{v / GIB:.2f}"


def num(v, digits=0):
    return "" if v is None else f"{v:,.{digits}f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def model_facts(rows):
    """Per model: weight bytes on the GPU and KV bytes per token, from headinfer rows."""
    facts = {}
    for r in rows:
        if not str(r.get("engine", "")).startswith("headinfer"):
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
        out.append([series_label(r), fmt_tokens(r["context"]), r.get("fill", ""), gib(weights), gib(kv_gpu), gib(other),
                    gib(peak), gib(kv_host), how])
    return table(["configuration", "context", "KV from", "weights GiB", "KV on GPU GiB", "other GPU GiB",
                  "total GPU GiB (driver peak)", "KV in host RAM GiB", "source"], out)


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
    configs = sorted({series_label(r) for r in rows})
    contexts = sorted({r["context"] for r in rows})
    by = {(series_label(r), r["context"]): r for r in rows}
    header = ["context"]
    for c in configs:
        header += [f"{c} prefill tok/s", f"{c} decode ms", f"{c} floor ms"]
    out = []
    for ctx in contexts:
        line = [fmt_tokens(ctx)]
        for c in configs:
            r = by.get((c, ctx), {})
            prefill = num(r.get("prefill_tps")) if r.get("prefill_tps") else ("(synthetic)" if r.get("fill") == "synthetic" else "")
            line += [prefill, num(r.get("decode_ms"), 1), num(r.get("decode_floor_ms"), 1)]
        out.append(line)
    return table(header, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=["memory", "maxctx", "latency"])
    ap.add_argument("rows", nargs="+", help="JSON row files")
    ap.add_argument("--layers", type=int, default=32,
                    help="layers of the model, for the share of HF's offloaded cache on the GPU (default 32)")
    args = ap.parse_args()
    if args.table == "maxctx":
        rows = []
        for p in args.rows:
            with open(p) as f:
                data = json.load(f)
            if not isinstance(data, list):
                sys.exit(f"{p}: expected a JSON list of rows, got {type(data).__name__}")
            rows += [r for r in data if isinstance(r, dict)]
        print(maxctx_rows(rows))
        return
    rows = load_rows(args.rows)
    if not rows:
        sys.exit("no rows with status ok in " + ", ".join(args.rows))
    print(memory_rows(rows, args.layers) if args.table == "memory" else latency_rows(rows))


if __name__ == "__main__":
    main()
