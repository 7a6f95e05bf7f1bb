#!/usr/bin/env python3
"""`headinfer export` against HF transformers on tiny synthetic models: each preset
is exported, loaded by transformers, and its logits compared with the engine's
(hf_parity.py's check, on the CPU unless told otherwise). Needs torch and
transformers, so it is not part of ctest; run it by hand or on the GPU machine:

  python3 scripts/reference/hf_export_check.py [--device cpu] [--headinfer PATH]

In F32 (engine and HF both F32) the prompt logits must agree to 1e-4 relative and
every teacher-forced greedy step must pick the same token. In BF16 the engine
keeps activations in F32 while HF rounds them to BF16, so only the relative error
is bounded (5e-2) and top-1 differences are reported, not failed.
"""
import argparse
import sys
import tempfile

import hf_parity

PRESETS = ["tiny-gqa", "tiny-mha", "tiny-mqa", "tiny-qwen2", "tiny-llama3"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--headinfer")
    ap.add_argument("--prompt-tokens", type=int, default=48)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--presets", default=",".join(PRESETS))
    opts = ap.parse_args()
    failed, runs = [], 0
    with tempfile.TemporaryDirectory() as export_base:
        for preset in opts.presets.split(","):
            for dtype, tol, strict in (("f32", 1e-4, True), ("bf16", 5e-2, False)):
                spec = f"synthetic:{preset}" + (",dtype=f32" if dtype == "f32" else "")
                args = hf_parity.parser().parse_args(
                    ["-m", spec, "--prompt-tokens", str(opts.prompt_tokens), "--steps", str(opts.steps),
                     "--dtype", dtype, "--device", opts.device, "--backend", opts.backend, "--tol", str(tol),
                     "--export-dir", export_base, "--chunk-size", "16"] +
                    (["--headinfer", opts.headinfer] if opts.headinfer else []))
                print(f"== {spec} ({dtype})")
                runs += 1
                report, ok = hf_parity.check(args)
                if (strict and not ok) or report["max_rel_err"] > tol:
                    failed.append(f"{spec} {dtype}")
    print(f"{runs - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("failed: " + ", ".join(failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
