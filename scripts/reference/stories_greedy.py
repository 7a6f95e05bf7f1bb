#!/usr/bin/env python3
"""Greedy reference ids for stories260K from HF transformers (independent of headinfer).

Usage: python3 scripts/reference/stories_greedy.py MODEL_DIR OUT_JSON [N=199]
Runs a plain greedy loop (argmax of the last position's logits, EOS ignored) from
BOS alone in float32 and writes the ids plus the decoded text.
"""
import json
import sys

import torch
from transformers import AutoTokenizer, LlamaForCausalLM, LlamaTokenizer


def main():
    model_dir, out_path = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 199
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval().to(dev)
    # Full float32 matmuls on the GPU too (no TF32), like the CPU run that made the fixture.
    torch.backends.cuda.matmul.allow_tf32 = False
    ids = [model.config.bos_token_id]
    with torch.no_grad():
        past = None
        inp = torch.tensor([ids], device=dev)
        for _ in range(n):
            out = model(input_ids=inp, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = int(out.logits[0, -1].argmax())
            ids.append(nxt)
            inp = torch.tensor([[nxt]], device=dev)
    try:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=f"{model_dir}/tokenizer.model")
        text = sp.decode(ids[1:])
    except Exception as e:  # text is informational only
        text = f"(not decoded: {e})"
    json.dump({"model": "stories260K", "made_by": "HF transformers %s, torch %s, float32 on %s, greedy, EOS ignored"
               % (__import__("transformers").__version__, torch.__version__, dev),
               "bos": ids[0], "generated": ids[1:], "text": text}, open(out_path, "w"), indent=1)
    print(text)


if __name__ == "__main__":
    main()
