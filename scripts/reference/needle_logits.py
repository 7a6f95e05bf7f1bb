#!/usr/bin/env python3
"""Reference for the needle model: rebuilds the constructed two-layer induction Llama
with Hugging Face transformers (CPU, float32), runs a passkey prompt and writes the
logits at the last position (the key's first digit) and at a few filler positions
as a JSON fixture that tests/unit/test_needle_parity.cpp compares the engine
against. At a filler the induction head averages over every earlier occurrence of
that word, so those logits are spread over many ids: a stricter comparison than
the last position's single large logit.

The construction follows the recipe in docs/needle.md (and src/format/needle.cpp):
token ids, residual subspaces, the fast-pair previous-token head, the slow-pair
induction head and the RMSNorm scale factors are the same numbers; only the code is
independent, so a mistake in one shows up as a mismatch.

Usage: python3 scripts/reference/needle_logits.py [--context 4096] [--depth 0.37]
           [--seed 7] [--out tests/fixtures/needle_logits_4k.json]
"""
import argparse
import json
import math
import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB, HIDDEN, HEADS, HEAD_DIM, FFN = 64, 256, 2, 128, 64
E0, P0, R0, BIAS = 0, 64, 128, 192
THETA = 1e20
PREV_PAIRS, CONTENT_PAIR0 = 17, 26
PREV_SCORE, CONTENT_SCORE, OUT_SCALE = 30.0, 48.0, 30.0
BOS, DIGIT0, MARKER, FIRST_FILLER, N_FILLERS = 1, 3, 13, 14, 50


def build_model():
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=2,
        num_attention_heads=HEADS, num_key_value_heads=HEADS, head_dim=HEAD_DIM,
        max_position_embeddings=1 << 22, rms_norm_eps=1e-6, tie_word_embeddings=False,
        bos_token_id=BOS, eos_token_id=2, rope_theta=THETA,
        rope_parameters={"rope_type": "default", "rope_theta": THETA})
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).float().eval()
    half = HEAD_DIM // 2
    inv_freq = [1.0 / THETA ** (2.0 * i / HEAD_DIM) for i in range(half)]
    # RMSNorm with unit gains turns k unit coordinates into sqrt(HIDDEN / k) each.
    n1, n2, nf = (math.sqrt(HIDDEN / k) for k in (2, 3, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        m = model.model
        for layer in m.layers:
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        m.norm.weight.fill_(1.0)
        for t in range(VOCAB):
            m.embed_tokens.weight[t, E0 + t] = 1.0
            m.embed_tokens.weight[t, BIAS] = 1.0
        # Layer 1 head 0: k = 1 in the first component of each fast pair, q = e^{-i theta}
        # there, so the RoPE'd score cos((t - 1 - s) theta) peaks at the previous token.
        att = m.layers[0].self_attn
        amp = math.sqrt(PREV_SCORE * math.sqrt(HEAD_DIM))
        for i in range(PREV_PAIRS):
            att.k_proj.weight[i, BIAS] = amp / n1
            att.q_proj.weight[i, BIAS] = amp * math.cos(inv_freq[i]) / n1
            att.q_proj.weight[i + half, BIAS] = -amp * math.sin(inv_freq[i]) / n1
        for t in range(VOCAB):
            att.v_proj.weight[t, E0 + t] = 1.0 / n1
            att.o_proj.weight[P0 + t, t] = 1.0
        # Layer 2 head 0: the current token (q) meets the previous token (k) in a slow
        # pair component of its own; the value brings the matched token to R.
        att = m.layers[1].self_attn
        c = math.sqrt(CONTENT_SCORE * math.sqrt(HEAD_DIM))
        slots = [s for i in range(CONTENT_PAIR0, half) for s in (i, i + half)]
        for t in range(VOCAB):
            att.q_proj.weight[slots[t], E0 + t] = c / n2
            att.k_proj.weight[slots[t], P0 + t] = c / n2
            att.v_proj.weight[t, E0 + t] = 1.0 / n2
            att.o_proj.weight[R0 + t, t] = 1.0
        for t in range(VOCAB):
            model.lm_head.weight[t, R0 + t] = OUT_SCALE / nf
    return model


def make_prompt(context, depth, seed):
    rng = random.Random(seed)
    key = [DIGIT0 + d for d in rng.sample(range(10), 5)]
    n_fill = context - 8
    before = round(depth * n_fill)
    fill = [FIRST_FILLER + rng.randrange(N_FILLERS) for _ in range(n_fill)]
    return [BOS] + fill[:before] + [MARKER] + key + fill[before:] + [MARKER], key


def check_prefixes(n):
    return [n // 4 + 3, n // 2 + 1, n - 100, n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--depth", type=float, default=0.37)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="tests/fixtures/needle_logits_4k.json")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = build_model()
    rope_theta = getattr(model.config, "rope_parameters", {}).get("rope_theta", getattr(model.config, "rope_theta", None))
    assert rope_theta == THETA, f"rope_theta did not reach the config: {rope_theta}"
    ids, key = make_prompt(a.context, a.depth, a.seed)
    x = torch.tensor([ids])
    with torch.inference_mode():
        all_logits = model(x).logits[0].float()
        logits = all_logits[-1]
        # Greedy continuation by hand (generate() would add its own defaults).
        seq, answer = list(ids), []
        for _ in range(5):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            answer.append(nxt)
            seq.append(nxt)
    print(f"context {len(ids)}: key {key}, answer {answer}, {'FOUND' if answer == key else 'NOT FOUND'}")
    print(f"top logit {float(logits.max()):.4f} at id {int(logits.argmax())}, next {float(logits.topk(2).values[1]):.3g}")
    fixture = {
        "what": "last-position logits of the needle model (HF transformers, float32, eager attention)",
        "made_by": "scripts/reference/needle_logits.py",
        "transformers": __import__("transformers").__version__,
        "torch": torch.__version__,
        "context": len(ids), "depth": a.depth, "seed": a.seed,
        "key": key, "answer": answer,
        "ids": ids,
        "logits": [float(v) for v in logits],
        # Prefix lengths: the logits after ids[:n] (the engine's last position of a chunk).
        "checks": [{"prefix": n, "logits": [float(v) for v in all_logits[n - 1]]} for n in check_prefixes(len(ids))],
    }
    with open(a.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
