#!/usr/bin/env python3
"""sgemm on the MLP's shapes: Debian's OpenBLAS, BLIS and NumPy's OpenBLAS, 1 and 2 threads, round-robin.

    python3 bench/gemm_bench.py [--rounds 5] [--samples 21]

Builds bench/gemm_bench.c twice with cc, once against Debian's OpenBLAS (the
library's backend today, pthread build) and once against Debian's BLIS (pthread
build; scripts/bench_setup.sh installs it), and, when NumPy is installed, a third
time against the newer OpenBLAS its wheel bundles; then runs, every round, each build
with 1 and with 2 threads (OPENBLAS_NUM_THREADS, BLIS_NUM_THREADS) in a fresh
process, the backends' order alternating between rounds, and the FMA peak loop
with 1 and 2 threads. Each run prints the median GFLOP/s of SAMPLES timed samples
per shape; the table gives, per shape and configuration, the median over the
rounds [min-max of the rounds' medians] and that median as a share of the
machine's widest FMA peak (AVX-512, else AVX2) with the same number of threads
(measured the same way, every round). The load average is printed before and after.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "bench", "gemm_bench.c")
LIBDIR = "/usr/lib/x86_64-linux-gnu"
def numpy_openblas():
    """The OpenBLAS that NumPy's wheel bundles (a newer release than Debian's), or None."""
    try:
        import numpy
    except ImportError:
        return None
    found = glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "libscipy_openblas64_*.so"))
    return found[0] if found else None


BACKENDS = {
    # name: (library to link, thread variable)
    "OpenBLAS": (os.path.join(LIBDIR, "openblas-pthread", "libopenblas.so.0"), "OPENBLAS_NUM_THREADS"),
    "BLIS": (os.path.join(LIBDIR, "blis-pthread", "libblis.so.4"), "BLIS_NUM_THREADS"),
}
if numpy_openblas():
    BACKENDS["NumPy's OpenBLAS"] = (numpy_openblas(), "OPENBLAS_NUM_THREADS")
NUMPY = "NumPy's OpenBLAS"
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE",
                    "OPENBLAS_L2_SIZE")


def build(scratch):
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        sys.exit("gemm_bench: error: no C compiler (cc)")
    programs = {}
    for name, (library, _) in BACKENDS.items():
        if not os.path.exists(library):
            sys.exit(f"gemm_bench: error: {library} is missing (run scripts/bench_setup.sh)")
        program = os.path.join(scratch, f"gemm_{name.lower().replace(' ', '_')}")
        defines = ["-DSCIPY_OPENBLAS64"] if name == NUMPY else []
        subprocess.run([cc, "-O2", "-std=c11", *defines, SOURCE, "-o", program,
                        library, "-lpthread", f"-Wl,-rpath,{os.path.dirname(library)}"], check=True)
        programs[name] = program
    return programs


def run(command, env):
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def widest_peak(peaks):
    """The widest ISA among the peak loop's lines: "avx512" where the CPU ran it, else "avx2"."""
    return "avx512" if any(p["peak"] == "avx512" for p in peaks) else "avx2"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=21, help="timed samples per shape and run")
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.samples < 1:
        parser.error("--rounds and --samples must be at least 1")
    base = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    load_before = os.getloadavg()
    results = []   # dicts from the program, each with "round"
    peaks = []
    kernels = {}
    with tempfile.TemporaryDirectory(prefix="gemm-bench-") as scratch:
        programs = build(scratch)
        for r in range(args.rounds):
            names = list(BACKENDS)
            order = names[r % len(names):] + names[:r % len(names)]   # a different one first each round
            for threads in (1, 2):
                for name in order:
                    env = dict(base, **{BACKENDS[name][1]: str(threads)})
                    for entry in run([programs[name], "gemm", str(args.samples)], env):
                        if not entry["check"]:
                            sys.exit(f"gemm_bench: error: {name} computed a wrong product for {entry['shape']}")
                        entry.update(round=r, name=name, requested=threads)
                        kernels[name] = entry["kernels"]
                        results.append(entry)
                peaks += [dict(p, round=r) for p in run([programs["OpenBLAS"], "peak", str(threads)], base)]
            print(f"  round {r + 1}/{args.rounds} done, load {os.getloadavg()[0]:.2f}", file=sys.stderr)
    load_after = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gemm": results, "peak": peaks}, f, indent=1)

    def spread(values):
        return statistics.median(values), min(values), max(values)

    peak = {}
    print(f"FMA peak, GFLOP/s, median of {args.rounds} rounds [min-max] (each round: per thread the median of "
          f"301 samples, summed over threads; best = the threads' best samples summed):")
    widest = widest_peak(peaks)
    for isa in sorted({"avx2", widest}):
        for threads in (1, 2):
            med, lo, hi = spread([p["gflops"] for p in peaks if p["peak"] == isa and p["threads"] == threads])
            best = statistics.median([p["best"] for p in peaks if p["peak"] == isa and p["threads"] == threads])
            peak[isa, threads] = med
            print(f"  {isa:6} {threads} thread{'s' if threads > 1 else ' '}: {med:6.1f} [{lo:.1f}-{hi:.1f}], best {best:.1f}")
    print()
    configs = [(name, threads) for threads in (1, 2) for name in BACKENDS]
    shapes = list(dict.fromkeys(e["shape"] for e in results))
    header = ["shape (m x k . k x n)", "MFLOP"] + [f"{name.replace(NUMPY, 'NumPy OB')} {t}T" for name, t in configs]
    rows = []
    for shape in shapes:
        flops = next(e["flops"] for e in results if e["shape"] == shape)
        row = [shape, f"{flops / 1e6:.3f}"]
        for name, threads in configs:
            med, lo, hi = spread([e["gflops"] for e in results
                                  if e["shape"] == shape and e["name"] == name and e["requested"] == threads])
            row.append(f"{med:.1f} [{lo:.1f}-{hi:.1f}] {100 * med / peak[widest, threads]:.0f}%")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    print(f"sgemm GFLOP/s, median of {args.rounds} rounds [min-max of the rounds' medians], % of the {widest} "
          f"FMA peak with as many threads:")
    for i, r in enumerate([header] + rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(f"kernels: OpenBLAS {kernels.get('OpenBLAS')} (Debian 0.3.21, pthread), BLIS {kernels.get('BLIS')} "
          f"(Debian 0.9.0, pthread)" + (f", NumPy's OpenBLAS {kernels.get(NUMPY)} ({os.path.basename(BACKENDS[NUMPY][0])})"
                                        if NUMPY in BACKENDS else "")
          + f"; row-major, no transposes, beta 0; {args.samples} samples per shape and run")
    print(f"threads actually used, per backend (1T/2T): " + ", ".join(
        f"{name} {sorted(set((e['requested'], e['threads']) for e in results if e['name'] == name))}"
        for name in BACKENDS))
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} (2 CPUs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
