#!/usr/bin/env python3
"""bench/tables.py ratio: each engine run's prefill median against HF's, context by
context, from files as the GPU session leaves them (a log: progress text, then the
JSON rows), and the 1.1x mark on each side of the bound."""
import json
import os
import subprocess
import sys
import tempfile

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "bench"))
from tables import ratio_rows  # noqa: E402

failures = []


def expect(name, got, want):
    if got != want:
        failures.append(f"{name}: got {got!r}, expected {want!r}")


def row(engine, context, median, lo, hi):
    return {"engine": engine, "context": context, "status": "ok", "prefill_tps": median,
            "prefill_tps_min": lo, "prefill_tps_max": hi}


hf = [row("hf-dynamic", 16384, 29000, 28000, 29500), row("hf-dynamic", 65536, 18000, 17900, 18100)]
fast = [row("headinfer", 16384, 31900, 31000, 32000), row("headinfer", 65536, 19800, 19700, 19900)]
slow = [row("headinfer", 16384, 31899, 31000, 32000)]

text, ok = ratio_rows(hf, [("fast", fast)])
expect("exactly 1.1x at both contexts passes", ok, True)
expect("the 64K line", "| fast | 64K | 19,800 (19,700-19,900) | 18,000 (17,900-18,100) | 1.100 | yes |" in text, True)
text, ok = ratio_rows(hf, [("fast", fast), ("slow", slow)])
expect("a run just under 1.1x fails the whole", ok, False)
expect("its line says no", "| slow | 16K |" in text and text.rstrip().endswith("| no |"), True)

# The command on files the session writes: HF's rows as JSON, the engine's as a log.
with tempfile.TemporaryDirectory() as d:
    hf_path, eng_path = os.path.join(d, "hf.json"), os.path.join(d, "rows0.log")
    with open(hf_path, "w") as f:
        json.dump(hf, f)
    with open(eng_path, "w") as f:
        f.write("prefill 1/2 ...\nloading model [synthetic]\n" + json.dumps(fast, indent=1) + "\n")
    out = subprocess.run([sys.executable, os.path.join(root, "bench", "tables.py"), "ratio", hf_path, eng_path],
                         capture_output=True, text=True)
    expect("exit status", out.returncode, 0)
    expect("the log's rows are read", "| rows0 | 16K | 31,900 (31,000-32,000) | 29,000 (28,000-29,500) | 1.100 |"
           in out.stdout, True)

if failures:
    print("\n".join(failures))
    sys.exit(1)
print("ratio table: ok")
