#!/usr/bin/env python3
"""bench/tables.py repeat: two runs agree when their medians differ by no more than the
narrower of the two reported ranges (max - min over repetitions). Rows are made here,
at and around that bound, so the rule itself is what is checked."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))
from tables import repeat_rows  # noqa: E402


def row(median, lo, hi):
    return {"engine": "headinfer", "offload": "auto", "gpu_budget_bytes": 24 << 30, "context": 16384,
            "status": "ok", "decode_ms": median, "decode_ms_min": lo, "decode_ms_max": hi}


def agrees(a, b):
    return repeat_rows([row(*a)], [row(*b)])[1]


failures = []


def expect(name, got, want):
    if got != want:
        failures.append(f"{name}: agree = {got}, expected {want}")


# Tight ranges that do not contain each other's median, medians 0.05 apart, narrower
# range 0.07: they agree (the earlier, mutual-containment rule said no).
expect("shift within the narrower range", agrees((6.69, 6.65, 6.74), (6.64, 6.61, 6.68)), True)
# The same shift with a narrower range of 0.04 does not.
expect("shift past the narrower range", agrees((6.69, 6.67, 6.71), (6.64, 6.61, 6.68)), False)
# A wide range in one run does not excuse a shift past the other's narrow one.
expect("one wide range", agrees((6.69, 6.0, 7.5), (6.40, 6.39, 6.41)), False)
# Exactly at the bound agrees; symmetric in the order of the runs.
expect("at the bound", agrees((10.0, 9.5, 10.5), (11.0, 10.0, 11.5)), True)
expect("at the bound, swapped", agrees((11.0, 10.0, 11.5), (10.0, 9.5, 10.5)), True)
# Identical runs with no spread agree; any difference without spread does not.
expect("identical", agrees((5.0, 5.0, 5.0), (5.0, 5.0, 5.0)), True)
expect("no spread, different", agrees((5.0, 5.0, 5.0), (5.1, 5.1, 5.1)), False)

for f in failures:
    print("FAIL:", f)
print("ok" if not failures else f"{len(failures)} failed")
sys.exit(1 if failures else 0)
