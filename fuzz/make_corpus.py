#!/usr/bin/env python3
"""Writes the fuzz seed corpus: tiny valid files made with the reference writers
(the `safetensors` and `gguf` Python packages), so the seeds do not depend on our
own idea of the formats. Run from the repository root: python3 fuzz/make_corpus.py"""
import os

import numpy as np
from gguf import GGUFWriter, GGMLQuantizationType
from safetensors.numpy import save_file

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
os.makedirs(f"{root}/safetensors", exist_ok=True)
os.makedirs(f"{root}/gguf", exist_ok=True)

rng = np.random.default_rng(0)
save_file({"w": rng.standard_normal((4, 3)).astype(np.float32)}, f"{root}/safetensors/one_f32.safetensors")
save_file({"model.embed_tokens.weight": rng.standard_normal((8, 4)).astype(np.float16),
           "model.norm.weight": np.ones(4, dtype=np.float16),
           "b": np.zeros((2, 2), dtype=np.float32)},
          f"{root}/safetensors/three_mixed.safetensors", metadata={"format": "pt"})
save_file({}, f"{root}/safetensors/empty.safetensors")


def tiny_llama(path, quant=False, arch="llama"):
    # Q8_0 rows need 32 values; the float file is smaller still.
    h = 32 if quant else 8
    w = GGUFWriter(path, arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(h)
    w.add_feed_forward_length(h)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    toks = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(13)]
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 16)
    w.add_token_types([2, 3, 3] + [1] * 13)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_array("test.nested", [[1, 2], [3]])
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    w.add_tensor("token_embd.weight", f(16, h).astype(np.float16))
    w.add_tensor("output_norm.weight", f(h))
    w.add_tensor("blk.0.attn_norm.weight", f(h))
    w.add_tensor("blk.0.ffn_norm.weight", f(h))
    mats = {"attn_q": (h, h), "attn_k": (h // 2, h), "attn_v": (h // 2, h), "attn_output": (h, h),
            "ffn_gate": (h, h), "ffn_up": (h, h), "ffn_down": (h, h)}
    for name, shape in mats.items():
        data = f(*shape)
        if quant:
            # Q8_0 by hand: per 32 values an f16 scale then 32 int8.
            blocks = data.reshape(-1, 32)
            d = np.abs(blocks).max(axis=1) / 127
            q = np.round(blocks / np.where(d == 0, 1, d)[:, None]).astype(np.int8)
            raw = np.concatenate([d.astype(np.float16).view(np.uint8).reshape(-1, 2), q.view(np.uint8)], axis=1)
            w.add_tensor(f"blk.0.{name}.weight", raw.reshape(shape[0], -1), raw_dtype=GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(f"blk.0.{name}.weight", data.astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


tiny_llama(f"{root}/gguf/tiny_f16.gguf")
tiny_llama(f"{root}/gguf/tiny_q8_0.gguf", quant=True)
v = GGUFWriter(f"{root}/gguf/vocab_only.gguf", "llama")
v.add_tokenizer_model("gpt2")
v.add_token_list(["a", "b", "ab"])
v.add_token_merges(["a b"])
v.add_string("tokenizer.chat_template", "{{ x }}")
v.write_header_to_file()
v.write_kv_data_to_file()
v.close()
for d in ("safetensors", "gguf"):
    for n in sorted(os.listdir(f"{root}/{d}")):
        print(d, n, os.path.getsize(f"{root}/{d}/{n}"))
