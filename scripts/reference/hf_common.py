"""Helpers the HF transformers scripts share (hf_parity.py, hf_export_check.py,
bench/peers/hf_bench.py): exporting a headinfer model spec as an HF directory,
loading it in transformers with a checked dtype, random prompt ids, and calling
the model for the last position's logits only.

Nothing here imports torch at module level, so --help works without it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_headinfer(explicit=None):
    """The headinfer binary: --headinfer, $HEADINFER_BIN, the cuda or cpu build, PATH."""
    candidates = [explicit, os.environ.get("HEADINFER_BIN"),
                  os.path.join(REPO, "build", "cuda", "tools", "headinfer"),
                  os.path.join(REPO, "build", "cpu", "tools", "headinfer"),
                  shutil.which("headinfer")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    sys.exit("error: no headinfer binary found (build it, or pass --headinfer PATH or set HEADINFER_BIN)")


def export_dir_for(spec, base=None):
    """Where an exported spec lives: BASE/<spec as a file name> (default: the temp dir)."""
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec)
    return os.path.join(base or os.path.join(tempfile.gettempdir(), "headinfer-export"), name)


def ensure_model_dir(model, headinfer=None, export_base=None):
    """An HF directory for `model`: the directory itself, or a headinfer spec
    (synthetic:...) exported once with `headinfer export` and reused after."""
    if os.path.isdir(model):
        return model
    out = export_dir_for(model, export_base)
    marker = os.path.join(out, "headinfer-export.json")
    if os.path.isfile(marker):
        try:
            if json.load(open(marker)).get("spec") == model:
                return out
        except ValueError:
            pass
    binary = find_headinfer(headinfer)
    print(f"exporting {model} -> {out}", file=sys.stderr)
    subprocess.run([binary, "export", "-m", model, "-o", out], check=True)
    json.dump({"spec": model}, open(marker, "w"))
    return out


def torch_dtype(name):
    import torch
    return {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}[name]


def load_hf_model(model_dir, dtype_name, device, attn="sdpa"):
    """AutoModelForCausalLM in `dtype_name` on `device`; fails loudly when the
    weights did not load in the dtype asked for."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    dtype = torch_dtype(dtype_name)
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    # transformers 4.56 renamed torch_dtype to dtype; an unknown keyword would be
    # stored on the config silently, so pick the one this version reads.
    key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=attn, **{key: dtype})
    model = model.eval().to(device)
    got = next(model.parameters()).dtype
    if got != dtype:
        sys.exit(f"error: {model_dir}: weights loaded as {got}, expected {dtype}")
    return model


def random_ids(n, vocab_size, seed):
    """Random ordinary ids (ids below 1000 hold control tokens in real vocabularies)."""
    import numpy as np
    lo = 1000 if vocab_size > 2000 else min(3, vocab_size - 1)
    return np.random.default_rng(seed).integers(lo, vocab_size, size=n).tolist()


def last_logits(model, input_ids, cache):
    """Runs input_ids [1, n] through the model with `cache` and returns the logits
    of the last position only (vocab floats): never the n x vocab tensor, which at
    128K tokens would take 64 GB."""
    import inspect
    params = inspect.signature(model.forward).parameters
    # transformers 5.x renames past_key_values to cache (the old name warns).
    kv = {"cache": cache} if "cache" in params else {"past_key_values": cache}
    if "logits_to_keep" in params:
        return model(input_ids=input_ids, use_cache=True, logits_to_keep=1, **kv).logits[0, -1]
    if "num_logits_to_keep" in params:
        return model(input_ids=input_ids, use_cache=True, num_logits_to_keep=1, **kv).logits[0, -1]
    out = model.model(input_ids=input_ids, use_cache=True, **kv)
    return model.lm_head(out.last_hidden_state[:, -1:])[0, -1]


def hf_versions():
    import torch
    import transformers
    return f"transformers {transformers.__version__}, torch {torch.__version__}"
