#!/usr/bin/env python3
"""Checks the SASS of the warpgroup-MMA attention kernels for a ptxas register hazard.

An A-from-registers wgmma (HGMMA in SASS) reads its A fragment asynchronously. ptxas
(CUDA 13.0) has handed the registers of a fragment kept across loop iterations (Q) to
other values inside the loop, so the next tile's S = Q K^T read garbage: the head_dim
64 kernels failed their parity tests with such code (docs/gpu.md, 2026-12-03). This
check accepts a kernel only when, in its main loop, the registers every S = Q K^T HGMMA
reads as A are written afresh before the first of them on every iteration, or are never
written in the loop at all.

Usage: check_wgmma_fragments.py OBJECT_OR_SASS...   (a .o is disassembled with
cuobjdump: $CUOBJDUMP, PATH, the CUDA toolkit or the nvidia-cuda-cuobjdump wheel, with
the nvdisasm it runs beside it or on PATH).
Exit 0: every kernel passes; 1: a kernel fails; 77: no cuobjdump (skipped, said so).
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

SKIP = 77
INSTR = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
DEST = re.compile(r"^(?:@!?U?P\w+\s+)?[A-Z][\w.]*\s+(R\d+)\b")


def executable(path):
    """path, made executable if it is not (wheels unpack without the execute bit)."""
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


def find_cuobjdump():
    cands = [os.environ.get("CUOBJDUMP"), shutil.which("cuobjdump"), "/usr/local/cuda/bin/cuobjdump"]
    purelib = sysconfig.get_paths().get("purelib", "")
    cands += glob.glob(os.path.join(purelib, "nvidia", "cu*", "bin", "cuobjdump"))
    for c in cands:
        if c and os.path.isfile(c):
            return executable(c)
    return None


def disassemble(tool, path):
    """SASS text of an object, or None (and why) when the tools cannot produce it."""
    env = dict(os.environ)
    here = os.path.dirname(tool)
    nvdisasm = os.path.join(here, "nvdisasm")
    if os.path.isfile(nvdisasm):
        executable(nvdisasm)
        env.setdefault("NVDISASM_PATH", here)
    elif not shutil.which("nvdisasm"):
        return None, f"no nvdisasm beside {tool} or on PATH (pip install nvidia-cuda-nvdisasm)"
    r = subprocess.run([tool, "-sass", path], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{tool} -sass {path} failed: {r.stderr.strip()}")
    return r.stdout, None


def functions(sass_text):
    """{kernel name: [(address, instruction text)]}"""
    out, cur = {}, None
    for line in sass_text.splitlines():
        if "Function :" in line:
            cur = line.split("Function :", 1)[1].strip()
            out[cur] = []
            continue
        m = INSTR.search(line)
        if cur is not None and m:
            out[cur].append((int(m.group(1), 16), m.group(2)))
    return out


def check_kernel(ins):
    """(ok, reason) for one kernel's instructions."""
    qk = [i for i, (_, t) in enumerate(ins) if t.startswith("HGMMA") and "tnspB" not in t]
    if not qk:
        return True, "no S = Q K^T HGMMA"
    first_addr = ins[qk[0]][0]
    back = [(i, int(m.group(1), 16)) for i, (_, t) in enumerate(ins)
            for m in [re.search(r"BRA (0x[0-9a-f]+)", t)] if m and i > qk[0] and int(m.group(1), 16) <= first_addr]
    if not back:
        return True, "no loop around the HGMMAs"
    end, target = back[-1]
    start = next(i for i, (a, _) in enumerate(ins) if a == target)
    regs = set()
    for i in qk:
        m = re.search(r"HGMMA\.\S+ R\d+, R(\d+)", ins[i][1])
        if m:
            regs.update(f"R{int(m.group(1)) + j}" for j in range(4))
    fresh, later = set(), []
    for i in range(start, end + 1):
        m = DEST.match(ins[i][1])
        if not m or m.group(1) not in regs:
            continue
        if i < qk[0]:
            fresh.add(m.group(1))
        elif i > qk[0]:
            later.append(ins[i][1])
    if fresh == regs or not later:
        return True, f"{len(regs)} A registers, {'fresh each tile' if fresh == regs else 'never written in the loop'}"
    return False, (f"{len(regs)} A registers kept across the loop are written inside it "
                   f"({len(later)} times, e.g. '{later[0]}')")


def main(paths):
    if not paths:
        print(__doc__)
        return 2
    failed = checked = 0
    for path in paths:
        if path.endswith(".o"):
            tool = find_cuobjdump()
            if not tool:
                print(f"SKIPPED: no cuobjdump to disassemble {path} (pip install nvidia-cuda-cuobjdump)")
                return SKIP
            text, why = disassemble(tool, path)
            if text is None:
                print(f"SKIPPED: {why}")
                return SKIP
        else:
            with open(path) as f:
                text = f.read()
        for name, ins in functions(text).items():
            if "wgmma" not in name:
                continue
            ok, why = check_kernel(ins)
            checked += 1
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {name[:110]}: {why}")
    if checked == 0:
        print("FAIL: no warpgroup-MMA kernel found in", " ".join(paths))
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
