#!/usr/bin/env python3
"""Logit and greedy-token parity between headinfer and HF transformers on the same
weights, for a long random prompt.

  python3 scripts/reference/hf_parity.py -m synthetic:llama-3-8b,layers=4 \
      --prompt-tokens 8192 --steps 32 --dtype bf16 --device cuda --backend cuda

1. The model: an HF directory, or a headinfer spec exported with `headinfer export`
   (the engine runs the spec itself; tests/unit/test_hf_export.cpp proves the
   export gives the same logits bit for bit).
2. A prompt of random ids from --seed, written to a file.
3. headinfer: `generate --prompt-ids FILE -n STEPS --temp 0 --ignore-eos
   --dump-logits OUT` (last prompt logits and its greedy ids).
4. transformers (SDPA, --dtype, --device): the last prompt position's logits, then
   (a) its own greedy decode of STEPS tokens, and (b) teacher-forced on the
   engine's ids: at each step, HF's top-1 given the engine's prefix.
Prints the max relative error of the prompt logits, max|a-b| / max|b| with b =
HF's, and per step whether the top-1 tokens agree; where they do not, HF's logit
margin between its top-1 and the engine's token (a near tie is the expected
cause under BF16). Exit 0 when every teacher-forced step agrees and the relative
error is within --tol, else 2. --json writes the whole report.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import hf_common


def run_engine(args, model, ids_path, dump_path):
    binary = hf_common.find_headinfer(args.headinfer)
    cmd = [binary, "generate", "-m", model, "--prompt-ids", ids_path, "-n", str(args.steps), "--temp", "0",
           "--ignore-eos", "--dump-logits", dump_path, "--backend", args.backend]
    if args.kv_type:
        cmd += ["--kv-type", args.kv_type]
    if args.chunk_size:
        cmd += ["--chunk-size", str(args.chunk_size)]
    print("engine: " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.load(open(dump_path))


def run_hf(args, model_dir, prompt, engine_ids):
    import copy
    import torch
    model = hf_common.load_hf_model(model_dir, args.dtype, args.device, "sdpa")
    dev = args.device
    with torch.no_grad():
        cache = __import__("transformers").DynamicCache()
        logits = hf_common.last_logits(model, torch.tensor([prompt], device=dev), cache).float()
        prompt_logits = logits.cpu()
        forced_cache = copy.deepcopy(cache)
        # (a) free-running greedy decode
        free_ids, nxt = [], int(logits.argmax())
        for _ in range(args.steps):
            free_ids.append(nxt)
            if len(free_ids) == args.steps:
                break
            nxt = int(hf_common.last_logits(model, torch.tensor([[nxt]], device=dev), cache).argmax())
        # (b) teacher-forced on the engine's ids: step 0 is the prompt's logits
        forced = []
        logits_i = prompt_logits
        for i, eid in enumerate(engine_ids):
            top = int(logits_i.argmax())
            forced.append({"step": i, "engine": eid, "hf": top,
                           "hf_margin": float(logits_i[top] - logits_i[eid])})
            if i + 1 < len(engine_ids):
                logits_i = hf_common.last_logits(model, torch.tensor([[eid]], device=dev), forced_cache).float().cpu()
    return prompt_logits, free_ids, forced


def compare(args, dump, prompt_logits, free_ids, forced):
    import torch
    a = torch.tensor(dump["last_prompt_logits"], dtype=torch.float32)
    b = prompt_logits
    if a.shape != b.shape:
        sys.exit(f"error: vocab sizes differ: engine {tuple(a.shape)}, HF {tuple(b.shape)}")
    rel = float((a - b).abs().max() / b.abs().max())
    engine_ids = dump["generated_ids"]
    first_diff = next((i for i, (x, y) in enumerate(zip(engine_ids, free_ids)) if x != y), None)
    mismatches = [f for f in forced if f["engine"] != f["hf"]]
    report = {
        "model": args.model, "prompt_tokens": dump["prompt_tokens"], "seed": args.seed,
        "dtype": args.dtype, "device": args.device, "backend": args.backend, "versions": hf_common.hf_versions(),
        "max_rel_err": rel, "prompt_top1_engine": int(a.argmax()), "prompt_top1_hf": int(b.argmax()),
        "engine_ids": engine_ids, "hf_free_ids": free_ids, "free_running_first_difference": first_diff,
        "teacher_forced": forced, "teacher_forced_mismatches": len(mismatches),
    }
    print(f"model {args.model}, {dump['prompt_tokens']}-token prompt (seed {args.seed}), {args.dtype}, "
          f"HF on {args.device}, engine on {args.backend} ({report['versions']})")
    print(f"last prompt logits: max |a-b| / max |b| = {rel:.3e} (tolerance {args.tol:g}); "
          f"top-1 engine {report['prompt_top1_engine']}, HF {report['prompt_top1_hf']}")
    print(f"teacher-forced top-1 agreement: {len(forced) - len(mismatches)}/{len(forced)} steps")
    for f in mismatches:
        print(f"  step {f['step']}: engine {f['engine']}, HF {f['hf']} (HF margin {f['hf_margin']:.4g})")
    if first_diff is None:
        print(f"free-running greedy: the same {len(engine_ids)} tokens")
    else:
        print(f"free-running greedy: first difference at step {first_diff} "
              f"(engine {engine_ids[first_diff]}, HF {free_ids[first_diff]})")
    return report, rel <= args.tol and not mismatches


def check(args):
    """Runs both engines and compares; returns (report, ok)."""
    model_dir = hf_common.ensure_model_dir(args.model, args.headinfer, args.export_dir)
    vocab = json.load(open(os.path.join(model_dir, "config.json")))["vocab_size"]
    prompt = hf_common.random_ids(args.prompt_tokens, vocab, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ids_path = os.path.join(tmp, "prompt_ids.txt")
        with open(ids_path, "w") as f:
            f.write(" ".join(map(str, prompt)) + "\n")
        dump = run_engine(args, args.model, ids_path, os.path.join(tmp, "engine.json"))
    prompt_logits, free_ids, forced = run_hf(args, model_dir, prompt, dump["generated_ids"])
    return compare(args, dump, prompt_logits, free_ids, forced)


def parser():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="synthetic:llama-3-8b,layers=4", help="headinfer spec or HF directory")
    ap.add_argument("--prompt-tokens", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32", "f16"], help="HF compute dtype")
    ap.add_argument("--device", default="cuda", help="HF device: cuda or cpu")
    ap.add_argument("--backend", default="auto", help="engine backend: auto, cpu or cuda")
    ap.add_argument("--kv-type", help="engine KV type (default: the engine's auto)")
    ap.add_argument("--chunk-size", type=int, help="engine prefill chunk (default: the plan's)")
    ap.add_argument("--tol", type=float, default=0.05, help="largest accepted relative error of the prompt logits")
    ap.add_argument("--headinfer", help="headinfer binary")
    ap.add_argument("--export-dir", help="where exported specs are kept (default: the temp dir)")
    ap.add_argument("--json", help="write the report here")
    return ap


def main():
    ap = parser()
    args = ap.parse_args()
    if args.prompt_tokens <= 0 or args.steps <= 0:
        ap.error("--prompt-tokens and --steps must be positive")
    report, ok = check(args)
    if args.json:
        json.dump(report, open(args.json, "w"), indent=1)
    print("PARITY OK" if ok else "PARITY DIFFERS")
    sys.exit(0 if ok else 2)


if __name__ == "__main__":
    main()
