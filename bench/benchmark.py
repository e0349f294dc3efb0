#!/usr/bin/env python3
"""The library against the NumPy reference on the tutorial's MNIST recipe, side by side.

    python3 bench/benchmark.py [--rounds 3] [--data data/mnist] [--threads 1]

Each round runs, each in a process of its own (so peak memory is that side's alone):

  numpy     bench/numpy_reference.py: the recipe in plain NumPy
  library   this library through the Python bindings, driven step by step from
            Python: one Model.train_step per mini-batch (the primary number)
  dl train  the release `dl train` command (the whole loop in the library)
  C ABI     a tiny C program, compiled here with cc against the library, timing
            dl_predict on one sample

The recipe: specs/mnist_mlp.json (784-128 ReLU-10, He-normal init, seed 0),
plain SGD lr 0.01, batch 64, 5 epochs, a new shuffle every epoch. NumPy and the
Python loop run the tutorial's loop: each epoch they shuffle the whole training
set into a new array (not timed), then take 937 consecutive slices of 64 (the
last partial batch dropped) with one training step each (timed); `dl train`
shuffles inside the library, gathers every batch itself (timed) and keeps the
remainder (938 steps). NumPy trains
on standardized data; the library gets raw pixels and standardizes them itself
(the spec's "preprocessing": scale 1/255, the training set's mean and std).

Printed are medians over the rounds of: 5-epoch training wall and CPU time
(the training steps only), peak RSS of the whole process (ru_maxrss of the
child, data included), test accuracy, inference throughput on the 10,000 test
images in batches of 1,000, and single-sample prediction latency (through
Python, and through the C ABI). The last columns give NumPy/library and the
targets of the issue with a verdict.

Threads: both sides get OPENBLAS_NUM_THREADS=--threads (default 1: on a 2-core
machine two-thread runs sometimes stall; "auto" leaves it unset, and OpenBLAS
then takes every CPU), and the library's own kernels (the sparse first layer)
DL_NUM_THREADS=--kernel-threads ("auto", the default, leaves it unset: one
thread per CPU, the library's default). Compare with NumPy's best of --threads
1 and auto. NumPy's wheel bundles its own OpenBLAS; the library links the
system's. The thread counts each one really used are read back and printed.

The library is build/libdeeplearning.so (CMake, Release) when it exists, else
.build/release/libdeeplearning.so (swift build -c release); --library chooses.
"""
import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

SPEC = os.path.join(ROOT, "specs", "mnist_mlp.json")
INFERENCE_BATCH = 1000
LATENCY_CALLS = 2000          # single-sample predictions per timed repeat (Python)
REPEATS = 5                   # timed repeats of each inference measurement; the median is kept
MIB = 1024 * 1024

# The C ABI timing program: median over repeats of the mean time of one dl_predict on one sample.
C_PROGRAM = r"""
#define _POSIX_C_SOURCE 199309L  /* clock_gettime under -std=c11 */
#include <deeplearning.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CHECKPOINT\n", argv[0]); return 2; }
    dl_model *m = NULL;
    if (dl_model_load(argv[1], &m) != DL_OK) { fprintf(stderr, "%s\n", dl_last_error()); return 1; }
    float x[784], out[10];
    for (int i = 0; i < 784; i++) x[i] = (float)((i * 37) % 256);   /* raw pixels */
    enum { CALLS = 20000, REPEATS = 7 };
    double per_call[REPEATS];
    for (int i = 0; i < CALLS; i++) dl_predict(m, x, 1, out, 10);   /* warm up */
    for (int r = 0; r < REPEATS; r++) {
        double start = now();
        for (int i = 0; i < CALLS; i++) {
            if (dl_predict(m, x, 1, out, 10) != DL_OK) { fprintf(stderr, "%s\n", dl_last_error()); return 1; }
        }
        per_call[r] = (now() - start) / CALLS;
    }
    qsort(per_call, REPEATS, sizeof per_call[0], compare);
    printf("{\"c_latency_us\": %.4f}\n", per_call[REPEATS / 2] * 1e6);
    dl_model_free(m);
    return 0;
}
"""


# MARK: Workers (each runs in its own process)

def median_time(function, repeats=REPEATS):
    """Median wall seconds of `function()` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def inference_rate(predict_classes, x):
    """Predictions per second over x in batches of INFERENCE_BATCH."""
    def run():
        for start in range(0, len(x), INFERENCE_BATCH):
            predict_classes(x[start:start + INFERENCE_BATCH])
    run()   # warm up
    return len(x) / median_time(run)


def latency_us(predict_one):
    """Median microseconds of one call."""
    def run():
        for _ in range(LATENCY_CALLS):
            predict_one()
    run()
    return median_time(run) / LATENCY_CALLS * 1e6


def openblas_threads(library):
    """openblas_get_num_threads() of an already loaded OpenBLAS, or None."""
    for name in ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_"):
        try:
            return int(getattr(ctypes.CDLL(library), name)())
        except (OSError, AttributeError):
            continue
    return None


def worker_numpy(args):
    import numpy as np
    import numpy_reference as ref
    (x_train, y_train), (x_test, y_test) = ref.load_mnist(args.data)
    rng = np.random.default_rng(args.seed)
    params = ref.init_params(rng)
    result = ref.train(params, x_train, y_train, x_test, y_test, rng, epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, log=None)
    bundled = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so"))
    return {
        "train_wall": result["wall_seconds"],
        "train_cpu": result["cpu_seconds"],
        "test_accuracy": result["history"][-1]["test_accuracy"],
        "inference_rate": inference_rate(lambda xb: ref.logits(params, xb).argmax(axis=1), x_test),
        "py_latency_us": latency_us(lambda: ref.logits(params, x_test[:1]).argmax(axis=1)),
        "threads": openblas_threads(bundled[0]) if bundled else None,
        "version": f"NumPy {np.__version__}",
    }


def worker_library(args):
    import numpy as np
    import numpy_reference as ref
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import deeplearning as dl

    def raw(prefix):
        images = ref.read_idx(ref.find_idx(args.data, f"{prefix}-images-idx3-ubyte"))
        labels = ref.read_idx(ref.find_idx(args.data, f"{prefix}-labels-idx1-ubyte"))
        return images.reshape(len(images), -1), labels.astype(np.int32)

    # The training pixels stay bytes; each epoch's shuffled copy is float32 (see below).
    x_train, y_train = raw("train")
    x_test, y_test = raw("t10k")
    x_test = x_test.astype(np.float32)
    # The tutorial's statistics of the pixels / 255, from exact integer sums over chunks,
    # so that no second copy of the training set is made (peak memory is measured).
    total = squares = 0
    for start in range(0, len(x_train), 5000):
        chunk = x_train[start:start + 5000].astype(np.int64)
        total += int(chunk.sum())
        squares += int((chunk * chunk).sum())
    count = x_train.size
    mean = total / count / 255
    std = (squares / count / 255 ** 2 - mean ** 2) ** 0.5
    with open(SPEC) as f:
        spec = json.load(f)
    spec["optimizer"]["lr"] = args.lr
    spec["seed"] = args.seed
    spec["preprocessing"] = {"scale": 1 / 255, "mean": mean, "std": std}
    model = dl.Model(spec)

    rng = np.random.default_rng(args.seed)
    steps = len(x_train) // args.batch_size
    wall = cpu = 0.0
    for _ in range(args.epochs):
        # As the tutorial's loop and the NumPy reference do: shuffle the whole set once per
        # epoch (not timed), then train on consecutive slices of it (timed).
        order = rng.permutation(len(x_train))
        xs, ys = np.empty(x_train.shape, np.float32), y_train[order]
        for start in range(0, len(order), 5000):   # in chunks: no second full-size temporary
            xs[start:start + 5000] = x_train[order[start:start + 5000]]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(steps):
            batch = slice(i * args.batch_size, (i + 1) * args.batch_size)
            model.train_step(xs[batch], ys[batch])
        wall += time.perf_counter() - wall0
        cpu += time.process_time() - cpu0
        del xs, ys
    checkpoint = os.path.join(args.scratch, "library.h5")
    model.save(checkpoint)
    return {
        "train_wall": wall,
        "train_cpu": cpu,
        "test_accuracy": model.evaluate(x_test, y_test).accuracy,
        "inference_rate": inference_rate(model.predict_classes, x_test),
        "py_latency_us": latency_us(lambda: model.predict(x_test[:1])),
        "threads": openblas_threads("libopenblas.so.0"),
        "kernel_threads": dl._lib.lib.dl_get_num_threads(),
        "version": f"deeplearning {dl.__version__} ({dl._lib.library_path})",
        "checkpoint": checkpoint,
    }


# MARK: Driver

def run_measured(command, env):
    """Runs `command` and waits for it with wait4: (stdout, stderr, ru_maxrss in bytes, CPU seconds)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {process.returncode}):\n{stderr.strip()}")
    return stdout, stderr, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime


def measure_worker(side, args, env):
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, "--data", args.data,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--seed", str(args.seed), "--scratch", args.scratch]
    stdout, _, rss, _ = run_measured(command, env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss"] = rss
    return result


def measure_dl(args, env, dl):
    checkpoint = os.path.join(args.scratch, "dl.h5")
    stdout, _, rss, _ = run_measured([dl, "train", SPEC, "--data", args.data, "--epochs", str(args.epochs),
                                      "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                                      "--seed", str(args.seed), "--out", checkpoint], env)
    timing = re.search(r"training ([0-9.]+) s wall, ([0-9.]+) s CPU", stdout)
    accuracy = re.findall(r"test ([0-9.]+)%", stdout)
    if not timing or not accuracy:
        raise RuntimeError(f"unexpected dl train output:\n{stdout}")
    return {"train_wall": float(timing.group(1)), "train_cpu": float(timing.group(2)),
            "test_accuracy": float(accuracy[-1]) / 100, "peak_rss": rss}


def build_c_program(library, scratch):
    """Compiles the C timing program against `library`; None (with a note) without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        print("benchmark: no C compiler (cc): the C ABI latency is not measured", file=sys.stderr)
        return None
    source, program = os.path.join(scratch, "latency.c"), os.path.join(scratch, "latency")
    with open(source, "w") as f:
        f.write(C_PROGRAM)
    folder = os.path.dirname(library)
    subprocess.run([cc, "-O2", "-std=c11", "-I", os.path.join(ROOT, "Include"), source, "-o", program,
                    library, f"-Wl,-rpath,{folder}"], check=True)
    return program


def find_library(explicit):
    candidates = [explicit] if explicit else [os.path.join(ROOT, "build", "libdeeplearning.so"),
                                              os.path.join(ROOT, ".build", "release", "libdeeplearning.so")]
    for path in candidates:
        if os.path.isfile(path):
            return os.path.abspath(path)
    sys.exit("benchmark: error: no libdeeplearning.so; build it with "
             "`cmake -S . -B build -G Ninja && cmake --build build` or `swift build -c release`")


def find_dl(explicit):
    path = explicit or os.path.join(ROOT, ".build", "release", "dl")
    if not os.path.isfile(path):
        sys.exit(f"benchmark: error: no dl command at {path}; build it with `swift build -c release --product dl`")
    return os.path.abspath(path)


def median(rounds, side, key, scale=1.0):
    """The median of one measurement over the rounds, times `scale`; None when not measured."""
    values = [r[side][key] * scale for r in rounds if side in r and r[side].get(key) is not None]
    return statistics.median(values) if values else None


def report(rounds, args, data_bytes):
    """Prints the table of medians, the ratios NumPy/library and the issue's targets."""
    rss_limit = 1.5 * data_bytes / MIB + 100

    def row(label, key, digits, scale=1.0, library_side="library", ratio=True, target="", met=None):
        numpy, library = median(rounds, "numpy", key, scale), median(rounds, library_side, key, scale)
        dl = median(rounds, "dl", key, scale)
        quotient = numpy / library if ratio and numpy is not None and library else None
        verdict = "" if met is None else "met" if met(quotient, library, dl) else "NOT met"
        return (label, numpy, library, dl, digits, quotient, target, verdict)

    rows = [
        row("training wall, 5 epochs (s)", "train_wall", 2, target="NumPy/library >= 2.2",
            met=lambda q, lib, dl: q is not None and q >= 2.2),
        row("training CPU, 5 epochs (s)", "train_cpu", 2),
        row("peak RSS of the process (MiB)", "peak_rss", 0, scale=1 / MIB, target=f"library <= {rss_limit:.0f}",
            met=lambda q, lib, dl: lib is not None and lib <= rss_limit and (dl is None or dl <= rss_limit)),
        row("test accuracy (%)", "test_accuracy", 2, scale=100, ratio=False, target=">= 95.0",
            met=lambda q, lib, dl: lib is not None and lib >= 95 and (dl is None or dl >= 95)),
        row("inference, 10k in batches of 1000 (pred/s)", "inference_rate", 0, target="NumPy/library <= 0.952",
            met=lambda q, lib, dl: q is not None and q <= 1 / 1.05),
        row("1-sample predict through Python (us)", "py_latency_us", 2),
        row("1-sample predict through the C ABI (us)", "c_latency_us", 2, library_side="c", ratio=False,
            target="< 10", met=lambda q, lib, dl: lib is not None and lib < 10),
    ]

    def cell(value, digits):
        return "-" if value is None else f"{value:,.{digits}f}"

    header = (f"median of {len(rounds)} rounds", "NumPy", "library", "dl train", "NumPy/library", "target", "")
    table = [header] + [(label, cell(n, d), cell(lib, d), cell(dl, d), cell(q, 2), target, verdict)
                        for label, n, lib, dl, d, q, target, verdict in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("  ".join(c.ljust(w) if j in (0, 5, 6) else c.rjust(w)
                        for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    first = rounds[0]
    print()
    print("library: the Python bindings, one Model.train_step per batch; the C ABI row: the same "
          "library through a C program")
    print(f"OpenBLAS threads used: NumPy {first['numpy'].get('threads')} (its bundled scipy-openblas), "
          f"library {first['library'].get('threads')} (the system libopenblas); "
          f"OPENBLAS_NUM_THREADS={args.threads}; the library's own kernels: "
          f"{first['library'].get('kernel_threads')} (DL_NUM_THREADS={args.kernel_threads})")
    print(f"{first['numpy']['version']}; {first['library']['version']}")
    print(f"float32 data {data_bytes / MIB:.0f} MiB (70,000 x 784); peak RSS target 1.5 x data + 100 MiB = {rss_limit:.0f} MiB")
    print("raw numbers per round: " + json.dumps(
        [{side: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in values.items()
                 if k not in ("version", "checkpoint")} for side, values in r.items()} for r in rounds]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement (medians are reported)")
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "mnist"), help="MNIST IDX folder")
    parser.add_argument("--threads", default="1", help='OPENBLAS_NUM_THREADS for both sides, or "auto" (default 1)')
    parser.add_argument("--kernel-threads", default="auto",
                        help='DL_NUM_THREADS: threads of the library\'s own kernels ("auto", the default, leaves it unset)')
    parser.add_argument("--library", help="libdeeplearning.so to measure")
    parser.add_argument("--dl", help="the dl command to measure (default .build/release/dl)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=("numpy", "library"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        result = (worker_numpy if args.worker == "numpy" else worker_library)(args)
        print(json.dumps(result))
        return 0

    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.threads == "auto" and not args.threads.isdigit():
        parser.error('--threads must be a positive integer or "auto"')
    args.data = os.path.abspath(args.data)
    library, dl = find_library(args.library), find_dl(args.dl)
    env = dict(os.environ, DEEPLEARNING_LIBRARY=library)
    if args.threads == "auto":
        env.pop("OPENBLAS_NUM_THREADS", None)
    else:
        env["OPENBLAS_NUM_THREADS"] = args.threads
    if args.kernel_threads == "auto":
        env.pop("DL_NUM_THREADS", None)
    else:
        env["DL_NUM_THREADS"] = str(int(args.kernel_threads))
    data_bytes = (60000 + 10000) * 784 * 4
    print(f"benchmark: {args.rounds} rounds of NumPy, the library through Python, dl train and the C ABI; "
          f"library {library}; OPENBLAS_NUM_THREADS={args.threads}; DL_NUM_THREADS={args.kernel_threads}; load average {os.getloadavg()[0]:.2f}",
          file=sys.stderr)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="dl-bench-") as scratch:
        args.scratch = scratch
        program = build_c_program(library, scratch)
        for r in range(args.rounds):
            result = {}
            for side in ("numpy", "library"):
                result[side] = measure_worker(side, args, env)
                print(f"  round {r + 1} {side}: {result[side]['train_wall']:.2f} s training", file=sys.stderr)
            result["dl"] = measure_dl(args, env, dl)
            print(f"  round {r + 1} dl train: {result['dl']['train_wall']:.2f} s training", file=sys.stderr)
            if program:
                out, _, _, _ = run_measured([program, result["library"]["checkpoint"]], env)
                result["c"] = json.loads(out)
            rounds.append(result)
    report(rounds, args, data_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
