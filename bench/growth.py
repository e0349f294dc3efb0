#!/usr/bin/env python3
"""How the library's cost grows with the work, in GFLOP/s against the machine's FMA peak.

    python3 bench/growth.py [--rounds 3] [--samples 31] [--library build/libdeeplearning.so]

Builds bench/growth.c against the library and bench/gemm_bench.c (for its FMA peak loop)
against Debian's OpenBLAS, then, every round, runs growth with 1 and with 2 kernel threads
(DL_NUM_THREADS, each in a fresh process, the order alternating between rounds) and the
peak loop with 1 and 2 threads. The table gives per model, batch size and phase (a
training step, a prediction of one batch) the median over the rounds of each run's median
time, [min-max] of the rounds, the GFLOP/s it gives and that rate as a share of the
widest FMA peak the CPU has (AVX-512, else AVX2) with as many threads. growth.c says how
the work is counted.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from gemm_bench import run, widest_peak   # a program's JSON lines; the widest FMA peak measured

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
CNN_SPEC = os.path.join(ROOT, "specs", "mnist_cnn.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=31, help="timed calls per case and run")
    parser.add_argument("--library", default=os.path.join(ROOT, "build", "libdeeplearning.so"))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.samples < 1:
        parser.error("--rounds and --samples must be at least 1")
    library = os.path.abspath(args.library)
    if not os.path.exists(library):
        sys.exit(f"growth: error: {library} is missing (build the library first, see bench/README.md)")
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        sys.exit("growth: error: no C compiler (cc)")
    base = {k: v for k, v in os.environ.items() if k not in ("DL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    results, peaks = [], []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="growth-") as scratch:
        growth, peak = os.path.join(scratch, "growth"), os.path.join(scratch, "peak")
        libdir = os.path.dirname(library)
        subprocess.run([cc, "-O2", "-std=c11", "-I", os.path.join(ROOT, "Include"), os.path.join(ROOT, "bench", "growth.c"),
                        "-o", growth, library, f"-Wl,-rpath,{libdir}"], check=True)
        subprocess.run([cc, "-O2", "-std=c11", os.path.join(ROOT, "bench", "gemm_bench.c"),
                        "-o", peak, OPENBLAS, "-lpthread"], check=True)
        for r in range(args.rounds):
            for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
                env = dict(base, DL_NUM_THREADS=str(threads))
                results += [dict(e, round=r) for e in run([growth, str(args.samples), CNN_SPEC], env)]
                peaks += [dict(p, round=r) for p in run([peak, "peak", str(threads)], base)]
            print(f"  round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"growth": results, "peak": peaks}, f, indent=1)
    isa = widest_peak(peaks)
    peak = {t: statistics.median(p["gflops"] for p in peaks if p["peak"] == isa and p["threads"] == t)
            for t in (1, 2)}
    name = {"avx512": "AVX-512", "avx2": "AVX2"}[isa]
    print(f"{name} FMA peak (GFLOP/s, median of {args.rounds} rounds): 1 thread {peak[1]:.1f}, 2 threads {peak[2]:.1f}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print()
    header = ["model", "batch", "phase", "GFLOP"] + [f"{t} thread{'s' if t > 1 else ''}: us [min-max], GFLOP/s, % peak"
                                                      for t in (1, 2)]
    rows = []
    cases = list(dict.fromkeys((e["model"], e["batch"], e["phase"]) for e in results))
    for model, batch, phase in cases:
        case = [e for e in results if (e["model"], e["batch"], e["phase"]) == (model, batch, phase)]
        row = [model, str(batch), phase, f"{case[0]['gflop']:.4g}"]
        for t in (1, 2):
            times = [e["median_us"] for e in case if e["threads"] == t]
            med = statistics.median(times)
            rate = case[0]["gflop"] / (med * 1e-6)
            row.append(f"{med:,.0f} [{min(times):,.0f}-{max(times):,.0f}], {rate:.1f}, {100 * rate / peak[t]:.0f}%")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for i, r in enumerate([header] + rows):
        print(" | ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print(" | ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
