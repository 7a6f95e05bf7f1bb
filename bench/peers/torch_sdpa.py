#!/usr/bin/env python3
"""PyTorch's fused attention as a peer of `cuda_attention`: the same shapes (head_dim
128, 32 query / 8 KV heads, BF16, batch 1) and the same FLOP count (4 * visible
query-key pairs * head_dim * query heads), through each SDPA backend PyTorch offers,
with and without the softmax statistics (log-sum-exp) that headinfer's attention
contract returns. Prints one line per (case, backend, statistics) and, with --json,
writes the rows.

  python3 bench/peers/torch_sdpa.py [--quick] [--json rows.json]

Backends: cudnn (aten._scaled_dot_product_cudnn_attention, compute_log_sumexp on or
off) and flash (aten._scaled_dot_product_flash_attention, which always returns it).
Both take equal head counts, so K and V are expanded to 32 heads (compute-bound:
the extra reads do not change the rate). Q, K and V are laid out (token, head, dim)
as headinfer's rows and viewed as (batch, head, token, dim), the layout the engine
hands cuDNN.
"""
import argparse
import json
import sys

import torch

Q_HEADS, KV_HEADS, HEAD_DIM = 32, 8, 128


def visible_pairs(n_q, n_kv, causal):
    # Causal cases are square here (PyTorch aligns its mask top-left otherwise).
    return n_q * (n_q + 1) // 2 if causal else n_q * n_kv


def make(n, heads, gen):
    x = torch.randn(n, heads, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=gen)
    return x.transpose(0, 1).unsqueeze(0)  # (1, heads, n, dim) over (token, head, dim) memory


def expand(kv):
    g = Q_HEADS // KV_HEADS
    return kv.repeat_interleave(g, dim=1)


def runner(backend, lse, q, k, v, causal):
    scale = HEAD_DIM**-0.5
    if backend == "cudnn":
        op = torch.ops.aten._scaled_dot_product_cudnn_attention
        return lambda: op(q, k, v, None, lse, 0.0, causal, False, scale=scale)
    op = torch.ops.aten._scaled_dot_product_flash_attention
    return lambda: op(q, k, v, 0.0, causal, False, scale=scale)


def time_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(3):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / reps)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_sdpa: no CUDA device; nothing measured", file=sys.stderr)
        return 2
    reps = 5 if args.quick else 20
    gen = torch.Generator(device="cuda").manual_seed(1)
    # cuda_attention's cases: causal 16K and 32K, an 8K chunk against one earlier 8K
    # block; its 8K chunk after 128K keys here without the chunk's own causal part.
    cases = [("causal 16K", 16384, 16384, True), ("causal 32K", 32768, 32768, True),
             ("8K chunk x 128K earlier keys", 8192, 131072, False), ("8K chunk x one 8K block", 8192, 8192, False)]
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16, generator=gen)
    gemm_ms = time_ms(lambda: a @ a, reps)
    gemm_tf = 2 * 8192**3 / (gemm_ms * 1e-3) / 1e12
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}")
    print(f"{'BF16 GEMM 8192^3 (ceiling)':44s} {gemm_tf:7.1f} TFLOP/s")
    rows = [{"case": "gemm 8192^3", "tflops": gemm_tf}]
    for name, n_q, n_kv, causal in cases:
        q = make(n_q, Q_HEADS, gen)
        k, v = expand(make(n_kv, KV_HEADS, gen)), expand(make(n_kv, KV_HEADS, gen))
        flops = 4.0 * visible_pairs(n_q, n_kv, causal) * HEAD_DIM * Q_HEADS
        for backend, lse in (("cudnn", True), ("cudnn", False), ("flash", True)):
            label = f"{name}, {backend}{', lse' if lse else ''}"
            try:
                ms = time_ms(runner(backend, lse, q, k, v, causal), reps)
            except RuntimeError as e:
                print(f"{label:44s} failed: {str(e).splitlines()[0]}")
                rows.append({"case": name, "backend": backend, "lse": lse, "error": str(e).splitlines()[0]})
                continue
            tf = flops / (ms * 1e-3) / 1e12
            print(f"{label:44s} {ms:9.2f} ms   {tf:7.1f} TFLOP/s   ({100 * tf / gemm_tf:.0f}% of the GEMM ceiling)")
            rows.append({"case": name, "backend": backend, "lse": lse, "ms": ms, "tflops": tf})
        del q, k, v
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
