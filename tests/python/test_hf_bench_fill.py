#!/usr/bin/env python3
"""bench/peers/hf_bench.py --fill-above on the CPU, with a tiny random Llama saved in a
temp dir (no headinfer binary, no model files): one context prefilled, one above
--fill-above filled with random K/V, both decoded. Checks the JSON rows, and that
every cache the run made holds context + the warm-up step + decode tokens afterwards, the filled ones
random values in the model's dtype: the fill went into the cache the decode used.

Exits 77 (ctest's SKIP_RETURN_CODE for it) when torch or transformers is missing.
"""
import contextlib
import io
import json
import os
import sys
import tempfile

SKIP = 77
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PREFILL_CONTEXT = 64
FILL_ABOVE = 1024
FILL_CONTEXT = 2048
DECODE_TOKENS = 3
WARMUP = 1  # hf_bench.py's default untimed decode steps per repetition
REPS = 2
LAYERS, HEADS, KV_HEADS, HIDDEN = 2, 4, 2, 64


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def layer_kv(cache, i):
    """Layer i's (keys, values): cache.layers in transformers 4.56+, key_cache before."""
    if hasattr(cache, "layers"):
        return cache.layers[i].keys, cache.layers[i].values
    return cache.key_cache[i], cache.value_cache[i]


def main():
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"SKIP: hf_bench.py needs torch and transformers ({e}); install them with "
              "`pip install torch --index-url https://download.pytorch.org/whl/cpu transformers`")
        return SKIP

    sys.path.insert(0, os.path.join(REPO, "bench", "peers"))
    import hf_bench

    # Every cache the run makes, kept alive past run_context to be looked at after it.
    caches = []
    make_cache = hf_bench.make_cache

    def recording_make_cache(kind, config):
        cache = make_cache(kind, config)
        caches.append(cache)
        return cache

    hf_bench.make_cache = recording_make_cache
    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="hf-bench-fill-") as tmp:
        config = transformers.LlamaConfig(vocab_size=256, hidden_size=HIDDEN, intermediate_size=128,
                                          num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                          num_key_value_heads=KV_HEADS, max_position_embeddings=4096)
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(config).save_pretrained(tmp)
        sys.argv = ["hf_bench.py", "-m", tmp, "--device", "cpu", "--cache", "dynamic", "--dtype", "bf16",
                    "--context", f"{PREFILL_CONTEXT},{FILL_CONTEXT}", "--fill-above", "1K",
                    "--decode-tokens", str(DECODE_TOKENS), "--reps", str(REPS), "-o", "json"]
        with contextlib.redirect_stdout(out):
            hf_bench.main()

    rows = json.loads(out.getvalue())
    check([r["context"] for r in rows] == [PREFILL_CONTEXT, FILL_CONTEXT],
          f"expected rows at contexts {PREFILL_CONTEXT} and {FILL_CONTEXT}, got {[r['context'] for r in rows]}")
    prefilled, filled = rows
    for r in rows:
        check(r["status"] == "ok", f"context {r['context']}: status {r['status']!r}, expected 'ok'")
        check(r["decode_tokens"] == DECODE_TOKENS and r["reps"] == REPS,
              f"context {r['context']}: decode_tokens/reps {r['decode_tokens']}/{r['reps']}")
        check(isinstance(r["decode_ms"], float) and r["decode_ms"] > 0,
              f"context {r['context']}: decode_ms {r['decode_ms']!r}, expected > 0")
    check(prefilled["fill"] == "prefill", f"context {PREFILL_CONTEXT}: fill {prefilled['fill']!r}, expected 'prefill'")
    check(prefilled["prefill_tps"] is not None and prefilled["prefill_tps"] > 0,
          f"context {PREFILL_CONTEXT}: prefill_tps {prefilled['prefill_tps']!r}, expected > 0")
    check(prefilled["fill_s"] is None, f"context {PREFILL_CONTEXT}: fill_s {prefilled['fill_s']!r} on a prefill row")
    check(filled["fill"] == "synthetic", f"context {FILL_CONTEXT}: fill {filled['fill']!r}, expected 'synthetic'")
    for key in ("prefill_tps", "prefill_tps_min", "prefill_tps_max", "prefill_s"):
        check(filled[key] is None, f"context {FILL_CONTEXT}: {key} {filled[key]!r} on a synthetic row, expected blank")
    check(isinstance(filled["fill_s"], float) and filled["fill_s"] > 0,
          f"context {FILL_CONTEXT}: fill_s {filled['fill_s']!r}, expected > 0")

    check(len(caches) == 2 * REPS, f"expected {2 * REPS} caches (one per repetition), the run made {len(caches)}")
    for n, cache in enumerate(caches):
        context = PREFILL_CONTEXT if n < REPS else FILL_CONTEXT
        for layer in range(LAYERS):
            got = cache.get_seq_length(layer)
            check(got == context + WARMUP + DECODE_TOKENS,
                  f"cache {n} (context {context}) layer {layer} holds {got} tokens after the run, "
                  f"expected {context} + {WARMUP} warm-up + {DECODE_TOKENS} decode tokens")
            if context != FILL_CONTEXT:
                continue
            for name, t in zip(("keys", "values"), layer_kv(cache, layer)):
                shape = (1, KV_HEADS, FILL_CONTEXT + WARMUP + DECODE_TOKENS, HIDDEN // HEADS)
                check(tuple(t.shape) == shape, f"cache {n} layer {layer} {name}: shape {tuple(t.shape)}, expected {shape}")
                check(t.dtype == torch.bfloat16, f"cache {n} layer {layer} {name}: {t.dtype}, expected the model's bf16")
                std = t[:, :, :FILL_CONTEXT].float().std().item()
                check(0.9 < std < 1.1, f"cache {n} layer {layer} {name}: the filled positions have std {std:.3f}, "
                      "expected ~1 (standard normal random K/V)")
    print(f"ok: prefill row at {PREFILL_CONTEXT}, synthetic row at {FILL_CONTEXT} (fill {filled['fill_s']:.3f} s, "
          f"decode {filled['decode_ms']:.1f} ms/token); every cache holds context + {WARMUP} + {DECODE_TOKENS} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
