#!/usr/bin/env python3
"""HF transformers as a peer of `headinfer bench`: the same model (an HF directory,
or a headinfer spec such as synthetic:llama-3-8b exported with `headinfer export`),
the same contexts, the same row format (md, csv or json; field names as headinfer's).

  python3 bench/peers/hf_bench.py -m synthetic:llama-3-8b --context 16K,64K,128K \
      --decode-tokens 32 --reps 3 --cache dynamic,offloaded -o md
  python3 bench/peers/hf_bench.py -m synthetic:llama-3-8b --context 128K,512K,1M \
      --fill-above 128K --cache offloaded

Per context and KV cache kind, each repetition: a prefill of random ids (one
forward over the whole prompt, logits of the last position only), one untimed decode
step (--warmup-decode), then N greedy decode steps, each timed with
torch.cuda.synchronize(). Cache kinds:
  dynamic    transformers' DynamicCache, all KV on the GPU
  offloaded  transformers' offloaded KV cache (OffloadedCache in 4.45-4.5x,
             DynamicCache(offloading=True) in the versions that replaced it): each
             layer's KV lives in CPU memory and is prefetched one layer ahead
             (CUDA only: on --device cpu its rows say "unsupported on cpu")
Synthetic fill (--fill-above N, e.g. 200K; default: always prefill): a context
above N tokens is not prefilled. Each layer gets random K/V of shape
[1, KV heads, context, head_dim] in the model's dtype, drawn on the model's device
(seed --seed + repetition) and handed to the cache's own update(), layer by layer as
a prefill hands it: the dynamic cache keeps it on the GPU, the offloaded one copies
each layer to pinned CPU memory and prefetches layer 0 back, the state a prefill
leaves. The decode steps then continue at position `context` (the model takes its
positions from the cache length) from a random token. Decode time and memory are
the real ones; the values, and so the tokens, mean nothing. Such rows have fill
"synthetic", fill_s (seconds of the first repetition's fill) and no prefill fields;
as in `headinfer bench`, other rows have fill "prefill".
Memory: torch.cuda.max_memory_allocated / max_memory_reserved, and the driver's
used memory (total - free from cudaMemGetInfo) sampled after prefill (or fill) and
after decode. A context that runs out of memory is a row with status OOM, and the
remaining contexts still run. --device cpu runs the same code on the CPU (for
testing the script; no memory figures).
"""
import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                "scripts", "reference"))
import hf_common  # noqa: E402


def parse_tokens(text, flag, allow_zero=False):
    """A token count as headinfer writes them (4096, 16K, 1M); ValueError naming `flag` otherwise."""
    t = text.strip()
    mult = 1
    if t[-1:] in ("K", "k"):
        mult, t = 1024, t[:-1]
    elif t[-1:] in ("M", "m"):
        mult, t = 1 << 20, t[:-1]
    if not t.isdigit() or (int(t) == 0 and not allow_zero):
        whole = "a whole number of tokens, 0 or more" if allow_zero else "a positive whole number of tokens"
        raise ValueError(f"{flag}: '{text}' is not a token count (expected {whole}, e.g. 4096, 200K, 1M)")
    return int(t) * mult


def format_tokens(n):
    if n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n % 1024 == 0:
        return f"{n >> 10}K"
    return str(n)


def format_bytes(n):
    if n is None:
        return ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def offloaded_cache_api():
    """How this transformers version offloads the KV cache: "OffloadedCache" (4.4x-4.5x),
    "DynamicCache(offloading=True)" (later versions), or None."""
    import inspect
    import transformers
    if hasattr(transformers, "OffloadedCache"):
        return "OffloadedCache"
    if "offloading" in inspect.signature(transformers.DynamicCache.__init__).parameters:
        return "DynamicCache(offloading=True)"
    return None


def make_cache(kind, config):
    """A fresh KV cache of `kind`."""
    import transformers
    if kind == "dynamic":
        return transformers.DynamicCache()
    api = offloaded_cache_api()
    if api == "OffloadedCache":
        return transformers.OffloadedCache()
    if api is not None:
        return transformers.DynamicCache(config=config, offloading=True)
    sys.exit(f"error: --cache offloaded: transformers {transformers.__version__} has neither OffloadedCache nor "
             "DynamicCache(offloading=True); install a version that has one (4.45 or later)")


def kv_layout(config):
    """(layers, KV heads, head_dim) of the decoder: the shape of a synthetic fill."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return text.num_hidden_layers, kv_heads, head_dim


# Elements drawn per normal_() call: a backend that draws in F32 and converts then
# holds a temporary of one slice (128 MiB), never of a whole layer's K or V.
FILL_SLICE_ELEMENTS = 1 << 25


def synthetic_fill(cache, model, dev, context, seed):
    """Random K/V for `context` tokens in every layer of `cache`, through cache.update():
    whatever the cache kind does with a prefill's K/V (keep it on the GPU, or move it to
    pinned CPU memory and prefetch the next layer) it does with these, so decode finds
    the cache as a prefill leaves it."""
    torch = dev.torch
    layers, kv_heads, head_dim = kv_layout(model.config)
    dtype = next(model.parameters()).dtype
    gen = torch.Generator(device=dev.name)
    gen.manual_seed(seed)
    for layer in range(layers):
        kv = []
        for _ in range(2):
            t = torch.empty(1, kv_heads, context, head_dim, dtype=dtype, device=dev.name)
            flat = t.view(-1)
            for a in range(0, flat.numel(), FILL_SLICE_ELEMENTS):
                flat[a:a + FILL_SLICE_ELEMENTS].normal_(generator=gen)
            kv.append(t)
        cache.update(kv[0], kv[1], layer)
        # The cache holds its own copy (or the CPU's) now. Drop ours here rather than when
        # the next layer rebinds the names: held until then, this layer's V would still
        # be on the device while the next layer's K is drawn.
        del kv, t, flat
    for layer in range(layers):
        got = cache.get_seq_length(layer)
        if got != context:
            sys.exit(f"error: --fill-above: layer {layer} of the {type(cache).__name__} holds {got} tokens after a "
                     f"synthetic fill of {context} (a sliding-window or non-attention layer?); this model needs a "
                     "real prefill: raise --fill-above above the largest --context")


class Device:
    """Timing and memory probes for cuda or cpu."""

    def __init__(self, name):
        import torch
        self.torch = torch
        self.cuda = name.startswith("cuda")
        if self.cuda and not torch.cuda.is_available():
            sys.exit("error: --device cuda: torch sees no CUDA device (use --device cpu to test the script)")
        self.name = name

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def label(self):
        if self.cuda:
            return f"torch {self.name} ({self.torch.cuda.get_device_name()})"
        return "torch cpu"

    def reset_peak(self):
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()

    def driver_used(self):
        if not self.cuda:
            return None
        free, total = self.torch.cuda.mem_get_info()
        return total - free

    def peaks(self):
        if not self.cuda:
            return None, None
        return self.torch.cuda.max_memory_allocated(), self.torch.cuda.max_memory_reserved()

    def is_oom(self, e):
        oom = getattr(self.torch.cuda, "OutOfMemoryError", None) or getattr(self.torch, "OutOfMemoryError", None)
        return (oom is not None and isinstance(e, oom)) or "out of memory" in str(e).lower()

    def release(self):
        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()


def run_context(model, dev, kind, context, synthetic, args):
    """One row: reps x (prefill or synthetic fill, then decode) at `context` with a fresh
    cache each time."""
    torch = dev.torch
    vocab = model.config.vocab_size
    prompt = None if synthetic else torch.tensor([hf_common.random_ids(context, vocab, args.seed)], device=dev.name)
    prefill_s, fill_s, decode_ms, driver_peak = [], [], [], None
    dev.reset_peak()
    with torch.no_grad():
        for rep in range(args.reps):
            cache = make_cache(kind, model.config)
            logits = None
            dev.sync()
            t0 = time.perf_counter()
            if synthetic:
                synthetic_fill(cache, model, dev, context, args.seed + rep)
                # A random first token, as headinfer's synthetic rows take: there are no logits to argmax.
                nxt = torch.tensor([hf_common.random_ids(1, vocab, args.seed + rep)], device=dev.name)
            else:
                logits = hf_common.last_logits(model, prompt, cache)
                nxt = logits.argmax().reshape(1, 1)
            dev.sync()
            (fill_s if synthetic else prefill_s).append(time.perf_counter() - t0)
            used = dev.driver_used()
            driver_peak = max(driver_peak or 0, used) if used is not None else None
            # Untimed warm-up steps first, as `headinfer bench` takes them: the first step's
            # one-off costs (kernel choice, allocator growth) stay out of the figure.
            for _ in range(args.warmup_decode if args.decode_tokens else 0):
                logits = hf_common.last_logits(model, nxt, cache)
                nxt = logits.argmax().reshape(1, 1)
            total = 0.0
            for _ in range(args.decode_tokens):
                dev.sync()
                t0 = time.perf_counter()
                logits = hf_common.last_logits(model, nxt, cache)
                nxt = logits.argmax().reshape(1, 1)
                dev.sync()
                total += time.perf_counter() - t0
            if args.decode_tokens:
                decode_ms.append(total * 1e3 / args.decode_tokens)
            used = dev.driver_used()
            driver_peak = max(driver_peak or 0, used) if used is not None else None
            del cache, logits, nxt
            dev.release()
            first = f"fill {fill_s[-1]:.2f} s" if synthetic else f"prefill {prefill_s[-1]:.2f} s"
            print(f"hf_bench: {kind} {format_tokens(context)} rep {rep + 1}/{args.reps}: {first}"
                  + (f", decode {decode_ms[-1]:.1f} ms/token" if decode_ms else ""), file=sys.stderr)
    allocated, reserved = dev.peaks()
    return prefill_s, fill_s, decode_ms, driver_peak, allocated, reserved


# Field order and Markdown titles as `headinfer bench` writes them (tools/cli/bench_rows.cpp).
FIELDS = ["engine", "model", "backend", "weights", "kv_type", "gpu_budget_bytes", "offload", "context", "fill",
          "status", "reps", "decode_tokens", "chunk", "slabs_resident", "slabs_offloaded", "prefill_tps",
          "prefill_tps_min", "prefill_tps_max", "prefill_s", "fill_s", "decode_ms", "decode_ms_min", "decode_ms_max",
          "predicted_decode_ms", "decode_floor_ms", "x_floor", "decode_host_wait_ms", "gpu_peak_bytes",
          "gpu_peak_source",
          "predicted_gpu_bytes", "host_kv_bytes", "host_pinned_bytes", "predicted_host_bytes", "host_peak_rss_bytes",
          "h2d_per_token_bytes",
          "d2h_per_token_bytes", "predicted_h2d_per_token_bytes", "link_gbs", "plan_link_gbs", "measured_h2d_gbs",
          "measured_d2d_gbs", "weight_read_bytes", "resident_kv_bytes", "offloaded_kv_bytes", "setup_s",
          "torch_max_allocated_bytes", "torch_max_reserved_bytes"]
MARKDOWN = [("engine", "engine"), ("model", "model"), ("backend", "backend"), ("context", "context"),
            ("fill", "fill"), ("prefill_tps", "prefill tok/s"), ("decode_ms", "decode ms/token"), ("gpu_peak_bytes", "GPU peak"),
            ("torch_max_allocated_bytes", "torch max allocated"), ("status", "status")]


def make_row(args, model_label, dev, kind, context, synthetic, result=None, status="ok"):
    row = {k: None for k in FIELDS}
    row.update(engine=f"hf-transformers {kind}", model=model_label, backend=dev.label(),
               weights=args.dtype.upper(), kv_type=args.dtype.upper(),
               offload="none" if kind == "dynamic" else "offloaded", context=context,
               fill="synthetic" if synthetic else "prefill",
               status=status, reps=args.reps, decode_tokens=args.decode_tokens)
    if result is not None:
        prefill_s, fill_s, decode_ms, driver_peak, allocated, reserved = result
        if prefill_s:
            tps = [context / s for s in prefill_s]
            row.update(prefill_tps=statistics.median(tps), prefill_tps_min=min(tps), prefill_tps_max=max(tps),
                       prefill_s=statistics.median(prefill_s))
        if fill_s:
            row.update(fill_s=fill_s[0])  # the first fill, as headinfer reports it
        # The process's peak resident memory so far (Linux reports KiB): what the
        # offloaded cache takes of host RAM, pinned copies and allocator caching included.
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        row.update(gpu_peak_bytes=driver_peak, gpu_peak_source="driver" if driver_peak is not None else None,
                   torch_max_allocated_bytes=allocated, torch_max_reserved_bytes=reserved, host_peak_rss_bytes=rss)
        if decode_ms:
            row.update(decode_ms=statistics.median(decode_ms), decode_ms_min=min(decode_ms),
                       decode_ms_max=max(decode_ms))
    return row


def markdown_cell(row, key):
    v = row.get(key)
    if key == "prefill_tps" and v is None and row["fill"] == "synthetic" and row["status"] == "ok":
        return "(synthetic)"
    if v is None:
        return ""
    if key == "context":
        return format_tokens(v)
    if key.endswith("_bytes"):
        return format_bytes(v)
    if key == "prefill_tps":
        return f"{v:.0f} ({row['prefill_tps_min']:.0f}-{row['prefill_tps_max']:.0f})"
    if key == "decode_ms":
        d = 0 if v >= 100 else 2
        return f"{v:.{d}f} ({row['decode_ms_min']:.{d}f}-{row['decode_ms_max']:.{d}f})"
    return str(v)


def write_rows(rows, fmt, out):
    if fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    elif fmt == "csv":
        import csv
        w = csv.writer(out, lineterminator="\n")
        w.writerow(FIELDS)
        for r in rows:
            w.writerow(["" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in FIELDS])
    else:
        out.write("| " + " | ".join(t for _, t in MARKDOWN) + " |\n")
        out.write("|" + "---|" * len(MARKDOWN) + "\n")
        for r in rows:
            out.write("| " + " | ".join(markdown_cell(r, k) for k, _ in MARKDOWN) + " |\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True, help="HF directory, or a headinfer spec (synthetic:...) to export")
    ap.add_argument("--context", default="4K", help="comma-separated contexts (16K,64K,128K)")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup-decode", type=int, default=1,
                    help="untimed decode steps before the timed ones in each repetition (default 1, as headinfer bench)")
    ap.add_argument("--fill-above", help="contexts above this many tokens (e.g. 200K) get a synthetic KV fill "
                    "(random K/V, no prefill) instead of a prefill (default: always prefill)")
    ap.add_argument("--cache", default="dynamic,offloaded", help="KV caches to run: dynamic, offloaded")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32", "f16"])
    ap.add_argument("--attn", default="sdpa", help="attn_implementation (sdpa)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("-o", "--output-format", default="md", choices=["md", "csv", "json"])
    ap.add_argument("--headinfer", help="headinfer binary for exporting a spec")
    ap.add_argument("--export-dir", help="where exported specs are kept (default: the temp dir)")
    args = ap.parse_args()
    try:
        contexts = [parse_tokens(c, "--context") for c in args.context.split(",")]
        fill_above = None if args.fill_above is None else parse_tokens(args.fill_above, "--fill-above", allow_zero=True)
    except ValueError as e:
        ap.error(str(e))
    kinds = [k.strip() for k in args.cache.split(",") if k.strip()]
    if args.reps <= 0 or args.decode_tokens < 0 or args.warmup_decode < 0:
        ap.error("--reps must be positive and --decode-tokens not negative")
    for k in kinds:
        if k not in ("dynamic", "offloaded"):
            ap.error(f"--cache: unknown kind '{k}' (expected dynamic or offloaded)")

    dev = Device(args.device)
    model_dir = hf_common.ensure_model_dir(args.model, args.headinfer, args.export_dir)
    if "offloaded" in kinds and offloaded_cache_api() is None:
        make_cache("offloaded", None)  # exits with the reason before the model loads
    model = hf_common.load_hf_model(model_dir, args.dtype, args.device, args.attn)
    print(f"hf_bench: {args.model} on {dev.label()}, {hf_common.hf_versions()}", file=sys.stderr)
    rows = []
    for kind in kinds:
        for context in contexts:
            synthetic = fill_above is not None and context > fill_above
            if kind == "offloaded" and not dev.cuda:
                # transformers offloads through CUDA streams: nothing to measure on the CPU.
                rows.append(make_row(args, args.model, dev, kind, context, synthetic, status="unsupported on cpu"))
                continue
            try:
                result = run_context(model, dev, kind, context, synthetic, args)
                rows.append(make_row(args, args.model, dev, kind, context, synthetic, result))
            except RuntimeError as e:  # torch's OutOfMemoryError is one
                if not dev.is_oom(e):
                    raise
                print(f"hf_bench: {kind} {format_tokens(context)}: out of memory", file=sys.stderr)
                rows.append(make_row(args, args.model, dev, kind, context, synthetic, status="OOM"))
            finally:
                dev.release()
    write_rows(rows, args.output_format, sys.stdout)


if __name__ == "__main__":
    main()
