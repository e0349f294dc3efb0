#!/usr/bin/env python3
"""The library against NumPy, JAX and PyTorch on the tutorial's MNIST recipe, side by side.

    python3 bench/benchmark.py [--rounds 3] [--datasets mnist,fashion,textured | --data DIR ...]
                               [--threads 1] [--kernel-threads auto] [--skip jax,torch,cnn,dl,c]

Every round runs every side on every data set, round-robin, each side in a
process of its own (so peak memory is that side's alone):

  numpy     bench/numpy_reference.py: the recipe in plain NumPy (the reference)
  library   this library through the Python bindings, driven step by step from
            Python: one Model.train_step per mini-batch (the primary number)
  dl train  the release `dl train` command (the whole loop in the library)
  C ABI     a tiny C program, compiled here with cc against the library, timing
            dl_predict on one sample
  JAX       the recipe with a jax.jit-compiled SGD step (compile time apart)
  PyTorch   the recipe with torch.nn.Linear layers and torch.optim.SGD
and, once a round on MNIST, the CNN of specs/mnist_cnn.json: ms per training step
of 64 in the library (Model.train_step) and rebuilt in PyTorch (1 and 2 threads).

The recipe: specs/mnist_mlp.json (784-128 ReLU-10, He-normal init, seed 0),
plain SGD lr 0.01, batch 64, 5 epochs, a new shuffle every epoch. NumPy, JAX,
PyTorch and the Python loop run the tutorial's loop: each epoch they shuffle the
whole training set into a new array (not timed), then take 937 consecutive
slices of 64 (the last partial batch dropped) with one training step each
(timed). JAX and PyTorch start from NumPy's initial weights and draw NumPy's
permutations (one np.random.default_rng(seed) for both), so all three train on
the same batches in the same order; JAX keeps the epoch's shuffled copy on the
device and slices it inside the compiled step (jax.lax.dynamic_slice), and the
timer stops after block_until_ready. `dl train` shuffles inside the library,
gathers every batch itself (timed) and keeps the remainder (938 steps). NumPy,
JAX and PyTorch train on standardized data; the library gets raw pixels and
standardizes them itself (the spec's "preprocessing": scale 1/255, the training
set's mean and std).

Data sets: --datasets names them (default all three): mnist (data/mnist),
fashion (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist) and
textured (data/mnist-textured, else made once by bench/make_textured.py into
$TMPDIR/dl-bench-textured: MNIST on noisy backgrounds, no pixel is background);
--data DIR (repeatable) gives folders instead.

Printed per data set, median [min-max] over the rounds: 5-epoch training wall
and CPU time (the training steps only), peak RSS of the whole process
(ru_maxrss of the child, data included), test accuracy (and whether each side
agrees with NumPy's within noise), inference throughput on the 10,000 test
images in batches of 1,000, single-sample prediction latency (through Python,
and through the C ABI, on the set's first 256 test images in turn); then the
ratios the issue names, each computed within a round (paired) and summarised
the same way, with the targets and a verdict.

Threads: every side gets OPENBLAS_NUM_THREADS=--threads (default 1: on a 2-core
machine two-thread runs sometimes stall; "auto" leaves it unset, and OpenBLAS
then takes every CPU); with --threads 1, JAX runs with XLA_FLAGS=
"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" and PyTorch
with torch.set_num_threads(1) ("auto": their defaults). The library's own
kernels get DL_NUM_THREADS=--kernel-threads ("auto", the default, leaves it
unset: one thread per CPU, the library's default). NumPy's wheel bundles its own
OpenBLAS; the library links the system's. The thread counts each one really
used, the versions and the load average (at the start and after every round)
are printed.

JAX and PyTorch are optional (scripts/bench_setup.sh installs them, and
Fashion-MNIST): a side that cannot be imported is skipped with a line saying so.

The library is build/libdeeplearning.so (CMake, Release) when it exists, else
.build/release/libdeeplearning.so (swift build -c release); --library chooses.
The dl command is build/dl (CMake) or .build/release/dl; --dl chooses.
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

# The C ABI timing program: median over repeats of the mean time of one dl_predict on one
# sample, the data set's first test images in turn (raw pixels, as float32 in SAMPLES).
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
    if (argc != 3) { fprintf(stderr, "usage: %s CHECKPOINT SAMPLES\n", argv[0]); return 2; }
    dl_model *m = NULL;
    if (dl_model_load(argv[1], &m) != DL_OK) { fprintf(stderr, "%s\n", dl_last_error()); return 1; }
    enum { MAX_SAMPLES = 256, SIZE = 784, CALLS = 20000, REPEATS = 7 };
    static float x[MAX_SAMPLES * SIZE];
    float out[10];
    FILE *f = fopen(argv[2], "rb");
    const size_t samples = f ? fread(x, sizeof(float) * SIZE, MAX_SAMPLES, f) : 0;
    if (f) fclose(f);
    if (samples == 0) { fprintf(stderr, "no samples in %s\n", argv[2]); return 1; }
    double per_call[REPEATS];
    for (int i = 0; i < CALLS; i++) dl_predict(m, x + (i % samples) * SIZE, 1, out, 10);   /* warm up */
    for (int r = 0; r < REPEATS; r++) {
        double start = now();
        for (int i = 0; i < CALLS; i++) {
            if (dl_predict(m, x + (i % samples) * SIZE, 1, out, 10) != DL_OK) {
                fprintf(stderr, "%s\n", dl_last_error());
                return 1;
            }
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
    samples = os.path.join(args.scratch, "samples.f32")   # for the C ABI latency
    np.ascontiguousarray(x_test[:256], np.float32).tofile(samples)
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
        "samples": samples,
    }


def load_epoch_order(args):
    """The NumPy reference's random stream: He init first, then one permutation per epoch."""
    import numpy as np
    import numpy_reference as ref
    rng = np.random.default_rng(args.seed)
    params = ref.init_params(rng)
    return params, rng


def worker_jax(args):
    """The recipe in JAX: the same init and shuffles as the NumPy reference, a jitted SGD step."""
    import numpy as np
    import jax
    import jax.numpy as jnp
    import numpy_reference as ref
    (x_train, y_train), (x_test, y_test) = ref.load_mnist(args.data)
    y_train, y_test = y_train.astype(np.int32), y_test.astype(np.int32)
    init, rng = load_epoch_order(args)
    batch, lr = args.batch_size, np.float32(args.lr)

    def logits(params, x):
        w1, b1, w2, b2 = params
        return jnp.maximum(x @ w1.T + b1, 0) @ w2.T + b2

    def loss(params, x, y):
        log_p = jax.nn.log_softmax(logits(params, x))
        return -jnp.mean(jnp.take_along_axis(log_p, y[:, None], axis=1))

    # The epoch's shuffled copy lives on the device; step i slices it inside the compiled
    # function (a Python slice of a device array would be one more dispatch per step).
    @jax.jit
    def step(params, xs, ys, i):
        x = jax.lax.dynamic_slice_in_dim(xs, i * batch, batch)
        y = jax.lax.dynamic_slice_in_dim(ys, i * batch, batch)
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return [p - lr * g for p, g in zip(params, grads)], value

    predict = jax.jit(lambda params, x: jnp.argmax(logits(params, x), axis=1))
    params = [jnp.asarray(p) for p in init]
    steps = len(x_train) // batch
    # Compile (and run once) on the first epoch's shapes, from a copy: not timed as training.
    start = time.perf_counter()
    warm, _ = step([jnp.array(p) for p in init], jnp.asarray(x_train), jnp.asarray(y_train), 0)
    jax.block_until_ready(warm)
    compile_seconds = time.perf_counter() - start
    wall = cpu = 0.0
    for _ in range(args.epochs):
        order = rng.permutation(len(x_train))
        xs, ys = jnp.asarray(x_train[order]), jnp.asarray(y_train[order])
        jax.block_until_ready((xs, ys))
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(steps):
            params, _ = step(params, xs, ys, i)
        jax.block_until_ready(params)
        wall += time.perf_counter() - wall0
        cpu += time.process_time() - cpu0
    correct = sum(int((np.asarray(predict(params, x_test[s:s + 1000])) == y_test[s:s + 1000]).sum())
                  for s in range(0, len(x_test), 1000))
    one = jnp.asarray(x_test[:1])
    return {
        "train_wall": wall,
        "train_cpu": cpu,
        "compile_seconds": compile_seconds,
        "test_accuracy": correct / len(x_test),
        "inference_rate": inference_rate(lambda xb: predict(params, xb).block_until_ready(), x_test),
        "py_latency_us": latency_us(lambda: predict(params, one).block_until_ready()),
        "threads": os.environ.get("XLA_FLAGS", "XLA default"),
        "version": f"JAX {jax.__version__} ({jax.default_backend()})",
    }


def torch_threads(args):
    import torch
    if args.threads != "auto":
        torch.set_num_threads(int(args.threads))
    return torch.get_num_threads()


def worker_torch(args):
    """The recipe in PyTorch: the same init and shuffles, nn.Linear layers, optim.SGD."""
    import numpy as np
    import torch
    import numpy_reference as ref
    threads = torch_threads(args)
    (x_train, y_train), (x_test, y_test) = ref.load_mnist(args.data)
    init, rng = load_epoch_order(args)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    with torch.no_grad():
        for parameter, value in zip(model.parameters(), init):
            parameter.copy_(torch.from_numpy(value))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    steps = len(x_train) // args.batch_size
    wall = cpu = 0.0
    for _ in range(args.epochs):
        order = rng.permutation(len(x_train))
        xs, ys = torch.from_numpy(x_train[order]), torch.from_numpy(y_train[order])
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(steps):
            batch = slice(i * args.batch_size, (i + 1) * args.batch_size)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xs[batch]), ys[batch]).backward()
            optimizer.step()
        wall += time.perf_counter() - wall0
        cpu += time.process_time() - cpu0
    model.eval()
    x_test_t = torch.from_numpy(x_test)

    def predict_classes(xb):
        with torch.inference_mode():
            return model(torch.from_numpy(xb) if isinstance(xb, np.ndarray) else xb).argmax(dim=1)

    with torch.inference_mode():
        accuracy = float((model(x_test_t).argmax(dim=1).numpy() == y_test).mean())
    one = x_test_t[:1]
    return {
        "train_wall": wall,
        "train_cpu": cpu,
        "test_accuracy": accuracy,
        "inference_rate": inference_rate(predict_classes, x_test_t),
        "py_latency_us": latency_us(lambda: predict_classes(one)),
        "threads": threads,
        "version": f"PyTorch {torch.__version__}",
    }


CNN_SPEC = os.path.join(ROOT, "specs", "mnist_cnn.json")
# 60 timed steps a side (20 before the tenth session of #14): each median then spans about
# 1.5 s of the library's steps instead of 0.5 s, less at the mercy of one short slow phase
# of a shared VM (steps of the same build ranged 23-57 ms within one round).
CNN_WARMUP, CNN_STEPS = 3, 60


def cnn_batches(args):
    """CNN_WARMUP + CNN_STEPS standardized batches of the first shuffled epoch: (x, labels) pairs."""
    import numpy_reference as ref
    (x_train, y_train), _ = ref.load_mnist(args.data)
    _, rng = load_epoch_order(args)
    b = args.batch_size
    order = rng.permutation(len(x_train))[:(CNN_WARMUP + CNN_STEPS) * b]
    x, y = x_train[order], y_train[order]
    return [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(CNN_WARMUP + CNN_STEPS)]


def torch_from_spec(spec):
    """specs/mnist_cnn.json's layers, in order, as a torch.nn.Sequential."""
    import torch
    nn = torch.nn
    shape = (spec["input"]["size"],)
    layers = []
    for layer in spec["layers"]:
        kind = layer["type"]
        if kind == "reshape":
            layers.append(nn.Unflatten(1, tuple(layer["shape"])))
            shape = tuple(layer["shape"])
        elif kind == "conv2d":
            k, pad = layer["kernel_size"], layer.get("padding", 0)
            layers.append(nn.Conv2d(shape[0], layer["filters"], k, stride=layer.get("stride", 1), padding=pad,
                                    bias=layer.get("bias", True)))
            size = lambda n: (n + 2 * pad - k) // layer.get("stride", 1) + 1
            shape = (layer["filters"], size(shape[1]), size(shape[2]))
        elif kind == "batch_norm":
            layers.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "max_pool2d":
            k = layer["kernel_size"]
            layers.append(nn.MaxPool2d(k))
            shape = (shape[0], shape[1] // k, shape[2] // k)
        elif kind == "flatten":
            layers.append(nn.Flatten())
            shape = (int(__import__("math").prod(shape)),)
        elif kind == "dropout":
            layers.append(nn.Dropout(layer["rate"]))
        elif kind == "linear":
            layers.append(nn.Linear(shape[0], layer["units"]))
            shape = (layer["units"],)
        else:
            raise ValueError(f"{kind}: no torch equivalent in this benchmark")
    return nn.Sequential(*layers)


def step_times_ms(step, batches):
    """Median and extremes of the per-step milliseconds, after CNN_WARMUP untimed steps."""
    times = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        step(*batch)
        if i >= CNN_WARMUP:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times), max(times)


def worker_torch_cnn(args):
    """specs/mnist_cnn.json rebuilt in PyTorch: ms per training step of 64 (Adam), 1 and 2 threads."""
    import torch
    with open(CNN_SPEC) as f:
        spec = json.load(f)
    batches = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in cnn_batches(args)]
    result = {"version": f"PyTorch {torch.__version__}"}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        torch.manual_seed(spec.get("seed", 0))
        model = torch_from_spec(spec)
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=spec["optimizer"]["lr"])
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(xb, yb):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
            optimizer.step()

        result[f"cnn_ms_{threads}"], result[f"cnn_min_{threads}"], result[f"cnn_max_{threads}"] = \
            step_times_ms(step, batches)
    return result


def worker_library_cnn(args):
    """specs/mnist_cnn.json in the library: ms per Model.train_step of 64 on the same batches."""
    import numpy as np
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import deeplearning as dl
    with open(CNN_SPEC) as f:
        spec = json.load(f)
    model = dl.Model(spec)
    median_ms, low, high = step_times_ms(model.train_step, [(x, y.astype(np.int32)) for x, y in cnn_batches(args)])
    return {"cnn_ms": median_ms, "cnn_min": low, "cnn_max": high,
            "kernel_threads": dl._lib.lib.dl_get_num_threads()}


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


def measure_worker(side, args, env, data):
    command = [sys.executable, os.path.abspath(__file__), "--worker", side, "--data", data,
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--seed", str(args.seed), "--scratch", args.scratch, "--threads", args.threads]
    stdout, _, rss, _ = run_measured(command, env)
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss"] = rss
    return result


def measure_dl(args, env, dl, data):
    checkpoint = os.path.join(args.scratch, "dl.h5")
    stdout, _, rss, _ = run_measured([dl, "train", SPEC, "--data", data, "--epochs", str(args.epochs),
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
    path = explicit
    if path is None:
        built = [p for p in (os.path.join(ROOT, "build", "dl"), os.path.join(ROOT, ".build", "release", "dl"))
                 if os.path.isfile(p)]
        path = built[0] if built else os.path.join(ROOT, ".build", "release", "dl")
    if not os.path.isfile(path):
        sys.exit(f"benchmark: error: no dl command at {path}; build it with `swift build -c release --product dl`")
    return os.path.abspath(path)


# MARK: Report

DATASETS = {
    # name: (label, default folder; None: made by bench/make_textured.py into a scratch folder)
    "mnist": ("MNIST", os.path.join(ROOT, "data", "mnist")),
    "fashion": ("Fashion-MNIST", "/usr/share/datasets/fashion-mnist"),
    "textured": ("textured MNIST (dense)", None),
}
SIDES = ("numpy", "library", "dl", "jax", "torch")
SIDE_NAMES = {"numpy": "NumPy", "library": "library", "dl": "dl train", "jax": "JAX", "torch": "PyTorch"}
JAX_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
# Test accuracy "agrees with NumPy's" within: JAX and PyTorch train on NumPy's batches from
# NumPy's initial weights, so only rounding (summation order) separates them; the library
# draws its own He-normal init (the spec's seed), and dl train its own shuffles too.
ACCURACY_NOISE = {"jax": 0.0025, "torch": 0.0025, "library": 0.01, "dl": 0.01}


def values(rounds, *path, scale=1.0):
    """One measurement over the rounds (path: keys into each round's results), times scale."""
    found = []
    for r in rounds:
        value = r
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(value * scale)
    return found


def ratios(rounds, name, top, bottom, key):
    """Per-round quotients top[key] / bottom[key] (paired within each round)."""
    found = []
    for r in rounds:
        a, b = r.get(name, {}).get(top, {}).get(key), r.get(name, {}).get(bottom, {}).get(key)
        if a is not None and b:
            found.append(a / b)
    return found


def spread(found, digits):
    """'median [min-max]' of the values (just the value for one), '-' for none."""
    if not found:
        return "-"
    med = f"{statistics.median(found):,.{digits}f}"
    return med if len(found) == 1 else f"{med} [{min(found):,.{digits}f}-{max(found):,.{digits}f}]"


def print_table(header, rows, left=(0,)):
    """Columns right-aligned but those in `left`."""
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for i, r in enumerate([header] + rows):
        print("  ".join(c.ljust(w) if j in left else c.rjust(w)
                        for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def verdict(found, test):
    return "-" if not found else "met" if test(statistics.median(found)) else "NOT met"


def report(rounds, args, datasets, data_bytes, skipped, loads):
    rss_limit = 1.5 * data_bytes / MIB + 100
    n = len(rounds)
    print(f"median [min-max] over {n} round{'s' if n > 1 else ''}; every round ran every side on every data set, "
          f"round-robin")
    for name, (label, folder) in datasets.items():
        print()
        print(f"== {label} ({folder}) ==")
        measurements = [("training wall, 5 epochs (s)", "train_wall", 2, 1.0),
                        ("training CPU, 5 epochs (s)", "train_cpu", 2, 1.0),
                        ("peak RSS of the process (MiB)", "peak_rss", 0, 1 / MIB),
                        ("test accuracy (%)", "test_accuracy", 2, 100.0),
                        ("inference, batches of 1000 (pred/s)", "inference_rate", 0, 1.0),
                        ("1-sample predict through Python (us)", "py_latency_us", 2, 1.0)]
        header = ["measurement"] + [SIDE_NAMES[s] for s in SIDES]
        rows = [[label_] + [spread(values(rounds, name, side, key, scale=scale), digits) for side in SIDES]
                for label_, key, digits, scale in measurements]
        rows.append(["1-sample predict through the C ABI (us)", "-",
                     spread(values(rounds, name, "c", "c_latency_us"), 2), "-", "-", "-"])
        rows.append(["JAX compile + first step (s, not in training)", "-", "-", "-",
                     spread(values(rounds, name, "jax", "compile_seconds"), 2), "-"])
        print_table(header, rows)
        print()
        train_target = 2.2 if name == "mnist" else 2.0
        numpy_accuracy = values(rounds, name, "numpy", "test_accuracy")
        checks = [
            ("training NumPy/library", ratios(rounds, name, "numpy", "library", "train_wall"),
             f">= {train_target}", lambda q: q >= train_target),
            ("training NumPy/dl train", ratios(rounds, name, "numpy", "dl", "train_wall"),
             f">= {train_target}", lambda q: q >= train_target),
            ("training JAX/library", ratios(rounds, name, "jax", "library", "train_wall"), ">= 1.5", lambda q: q >= 1.5),
            ("training PyTorch/library", ratios(rounds, name, "torch", "library", "train_wall"), "", None),
            ("training NumPy/JAX", ratios(rounds, name, "numpy", "jax", "train_wall"), "", None),
            ("training NumPy/PyTorch", ratios(rounds, name, "numpy", "torch", "train_wall"), "", None),
            ("inference library/NumPy (pred/s)", ratios(rounds, name, "library", "numpy", "inference_rate"),
             ">= 1.5", lambda q: q >= 1.5),
            ("inference library/JAX (pred/s)", ratios(rounds, name, "library", "jax", "inference_rate"), "", None),
            ("inference library/PyTorch (pred/s)", ratios(rounds, name, "library", "torch", "inference_rate"), "", None),
            ("1-sample C ABI latency (us)", values(rounds, name, "c", "c_latency_us"), "< 3", lambda v: v < 3),
            ("peak RSS library (MiB)", values(rounds, name, "library", "peak_rss", scale=1 / MIB),
             f"<= {rss_limit:.0f}", lambda v: v <= rss_limit),
        ]
        if name == "mnist":
            checks.append(("test accuracy library (%)", values(rounds, name, "library", "test_accuracy", scale=100),
                           ">= 95.0", lambda v: v >= 95))
        rows = [[label_, spread(found, 2), target, verdict(found, test) if test else ""]
                for label_, found, target, test in checks]
        print_table(["ratio (per round, paired)", "median [min-max]", "target", ""], rows, left=(0, 2, 3))
        if numpy_accuracy:
            reference = statistics.median(numpy_accuracy)
            notes = []
            for side in ("library", "dl", "jax", "torch"):
                found = values(rounds, name, side, "test_accuracy")
                if found:
                    difference = statistics.median(found) - reference
                    agrees = "agrees" if abs(difference) <= ACCURACY_NOISE[side] else "DIFFERS"
                    notes.append(f"{SIDE_NAMES[side]} {100 * difference:+.2f} ({agrees}, noise "
                                 f"{100 * ACCURACY_NOISE[side]:.2g})")
            print(f"test accuracy against NumPy's {100 * reference:.2f}%, points (noise: JAX and PyTorch train on "
                  f"NumPy's batches from its init, the library from its own init): " + "; ".join(notes))

    print()
    print(f"== CNN training step ({os.path.relpath(CNN_SPEC, ROOT)}, batch {args.batch_size}, Adam; median [min-max] "
          f"ms of {CNN_STEPS} steps after {CNN_WARMUP} warm-up steps, per round) ==")
    if "cnn" in skipped:
        print(f"  skipped: {skipped['cnn']}")
    else:
        library_ms = values(rounds, "cnn", "library", "cnn_ms")
        rows = [["library (Python train_step)", spread(library_ms, 1)]]
        for threads in (1, 2):
            rows.append([f"PyTorch, {threads} thread{'s' if threads > 1 else ''}",
                         spread(values(rounds, "cnn", "torch", f"cnn_ms_{threads}"), 1)])
        print_table(["side", "ms a step"], rows)
        best_torch = [min(r["cnn"]["torch"]["cnn_ms_1"], r["cnn"]["torch"]["cnn_ms_2"])
                      for r in rounds if "torch" in r.get("cnn", {})]
        quotients = [t / lib for t, lib in zip(best_torch, library_ms)]
        per_threads = {t: [r["cnn"]["torch"][f"cnn_ms_{t}"] / r["cnn"]["library"]["cnn_ms"]
                           for r in rounds if "torch" in r.get("cnn", {}) and "library" in r.get("cnn", {})]
                       for t in (1, 2)}
        print_table(["ratio (per round, paired)", "median [min-max]", "target", ""], [
            ["PyTorch 1 thread / library", spread(per_threads[1], 2), "", ""],
            ["PyTorch 2 threads / library", spread(per_threads[2], 2), "", ""],
            ["PyTorch's faster / library", spread(quotients, 2), ">= 1.4", verdict(quotients, lambda q: q >= 1.4)],
        ], left=(0, 2, 3))

    print()
    print("== configuration ==")
    first = next(iter(datasets))
    sides = rounds[0][first]
    print(f"OPENBLAS_NUM_THREADS={args.threads} for every side (OpenBLAS threads used: NumPy "
          f"{sides.get('numpy', {}).get('threads')} in its bundled scipy-openblas, library "
          f"{sides.get('library', {}).get('threads')} in the system libopenblas); the library's kernels: "
          f"{sides.get('library', {}).get('kernel_threads')} threads (DL_NUM_THREADS={args.kernel_threads}); "
          f"JAX: XLA_FLAGS={sides.get('jax', {}).get('threads', '-')!r}; PyTorch: "
          f"torch.set_num_threads -> {sides.get('torch', {}).get('threads', '-')} for the MLP, 1 and 2 for the CNN")
    for variable in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if variable in os.environ:
            print(f"{variable}={os.environ[variable]} (set in this environment; it can slow NumPy's OpenBLAS)")
    versions = [sides.get(side, {}).get("version") for side in ("numpy", "library", "jax", "torch")]
    print("; ".join(v for v in versions if v))
    for side, reason in skipped.items():
        if side != "cnn":
            print(f"{SIDE_NAMES.get(side, side)}: skipped: {reason}")
    print(f"load average (1 min) at the start, after each round: " + ", ".join(f"{x:.2f}" for x in loads)
          + f" ({os.cpu_count()} CPUs)")
    print(f"float32 data {data_bytes / MIB:.0f} MiB (70,000 x 784 a set); peak RSS target 1.5 x data + 100 MiB")
    print("library: the Python bindings, one Model.train_step per batch; dl train: the whole loop in the library "
          "(938 steps an epoch); C ABI: dl_predict from C")
    print("raw numbers per round: " + json.dumps(
        [{name: {side: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()
                        if k not in ("version", "checkpoint", "samples")} for side, result in sides_.items()}
          for name, sides_ in r.items()} for r in rounds]))


# MARK: Main

def resolve_datasets(args, parser, scratch_root):
    """{name: (label, folder)} from --data (repeatable) and --datasets."""
    chosen = {}
    for folder in args.data or []:
        folder = os.path.abspath(folder)
        chosen[os.path.basename(folder.rstrip("/")) or folder] = (os.path.basename(folder.rstrip("/")), folder)
    names = [] if args.data and not args.datasets else (args.datasets or "mnist,fashion,textured").split(",")
    for name in names:
        name = name.strip()
        if name not in DATASETS:
            parser.error(f"--datasets: {name!r} is not one of {', '.join(DATASETS)}")
        label, folder = DATASETS[name]
        if folder is None:
            folder = os.path.join(ROOT, "data", "mnist-textured")
            if not os.path.isdir(folder):
                folder = os.path.join(scratch_root, "dl-bench-textured")
                if not glob.glob(os.path.join(folder, "t10k-labels-idx1-ubyte*")):
                    print(f"benchmark: making the textured set in {folder} (bench/make_textured.py, once)",
                          file=sys.stderr)
                    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_textured.py"),
                                    DATASETS["mnist"][1], folder], check=True)
        if not glob.glob(os.path.join(folder, "t10k-labels-idx1-ubyte*")):
            hint = ("scripts/bench_setup.sh" if name == "fashion" else "python3 scripts/fetch_mnist.py data/mnist")
            parser.error(f"{label}: no IDX files in {folder} ({hint})")
        chosen[name] = (label, folder)
    return chosen


def importable(module):
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every measurement (medians are reported)")
    parser.add_argument("--data", action="append",
                        help="an MNIST-format IDX folder; may be given several times (instead of --datasets)")
    parser.add_argument("--datasets", help="comma-separated: mnist (data/mnist), fashion "
                        "(/usr/share/datasets/fashion-mnist), textured (made by bench/make_textured.py); "
                        "default all three")
    parser.add_argument("--skip", default="", help="comma-separated sides to leave out: jax, torch, cnn, dl, c")
    parser.add_argument("--threads", default="1",
                        help='OPENBLAS_NUM_THREADS for every side, JAX\'s and PyTorch\'s threads, or "auto" (default 1)')
    parser.add_argument("--kernel-threads", default="auto",
                        help='DL_NUM_THREADS: threads of the library\'s own kernels ("auto", the default, leaves it unset)')
    parser.add_argument("--library", help="libdeeplearning.so to measure")
    parser.add_argument("--dl", help="the dl command to measure (default .build/release/dl)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=("numpy", "library", "jax", "torch", "torch_cnn", "library_cnn"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.threads == "auto" and not args.threads.isdigit():
        parser.error('--threads must be a positive integer or "auto"')

    if args.worker:
        args.data = os.path.abspath(args.data[-1])
        worker = {"numpy": worker_numpy, "library": worker_library, "jax": worker_jax, "torch": worker_torch,
                  "torch_cnn": worker_torch_cnn, "library_cnn": worker_library_cnn}[args.worker]
        print(json.dumps(worker(args)))
        return 0

    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"jax", "torch", "cnn", "dl", "c"}
    if unknown:
        parser.error(f"--skip: unknown side(s) {', '.join(sorted(unknown))}")
    skipped = {side: "--skip" for side in skip}
    if "jax" not in skip and not importable("jax"):
        skipped["jax"] = "jax is not installed (scripts/bench_setup.sh installs it)"
    if not importable("torch"):
        for side in ("torch", "cnn"):
            skipped.setdefault(side, "torch is not installed (scripts/bench_setup.sh installs its CPU wheel)")
    datasets = resolve_datasets(args, parser, tempfile.gettempdir())
    library = find_library(args.library)
    dl = None if "dl" in skipped else find_dl(args.dl)
    env = dict(os.environ, DEEPLEARNING_LIBRARY=library)
    if args.threads == "auto":
        env.pop("OPENBLAS_NUM_THREADS", None)
    else:
        env["OPENBLAS_NUM_THREADS"] = args.threads
    if args.kernel_threads == "auto":
        env.pop("DL_NUM_THREADS", None)
    else:
        env["DL_NUM_THREADS"] = str(int(args.kernel_threads))
    jax_env = dict(env, XLA_FLAGS=JAX_ONE_THREAD) if args.threads == "1" else dict(env)
    data_bytes = (60000 + 10000) * 784 * 4
    sides = [s for s in SIDES if s not in skipped] + ([] if "c" in skipped else ["c"])
    print(f"benchmark: {args.rounds} round(s) of {', '.join(sides)} on {', '.join(l for l, _ in datasets.values())}"
          f"{'' if 'cnn' in skipped else ', and the CNN step'}; library {library}; OPENBLAS_NUM_THREADS={args.threads}; "
          f"DL_NUM_THREADS={args.kernel_threads}; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    for side, reason in skipped.items():
        print(f"benchmark: {SIDE_NAMES.get(side, side)} skipped: {reason}", file=sys.stderr)
    rounds, loads = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="dl-bench-") as scratch:
        args.scratch = scratch
        program = None if "c" in skipped else build_c_program(library, scratch)
        for r in range(args.rounds):
            result = {}
            for name, (label, folder) in datasets.items():
                here = result[name] = {}
                for side in ("numpy", "library", "jax", "torch"):
                    if side in skipped:
                        continue
                    here[side] = measure_worker(side, args, jax_env if side == "jax" else env, folder)
                    print(f"  round {r + 1} {label} {SIDE_NAMES[side]}: {here[side]['train_wall']:.2f} s training",
                          file=sys.stderr)
                    if side == "library" and dl:
                        here["dl"] = measure_dl(args, env, dl, folder)
                        print(f"  round {r + 1} {label} dl train: {here['dl']['train_wall']:.2f} s training",
                              file=sys.stderr)
                    if side == "library" and program:
                        out, _, _, _ = run_measured([program, here["library"]["checkpoint"],
                                                     here["library"]["samples"]], env)
                        here["c"] = json.loads(out)
            if "cnn" not in skipped:
                mnist = datasets.get("mnist", next(iter(datasets.values())))[1]
                result["cnn"] = {side: measure_worker(worker, args, env, mnist)
                                 for side, worker in (("library", "library_cnn"), ("torch", "torch_cnn"))}
                cnn = result["cnn"]
                print(f"  round {r + 1} CNN: library {cnn['library']['cnn_ms']:.1f} ms, PyTorch "
                      f"{cnn['torch']['cnn_ms_1']:.1f} / {cnn['torch']['cnn_ms_2']:.1f} ms (1 / 2 threads)",
                      file=sys.stderr)
            rounds.append(result)
            loads.append(os.getloadavg()[0])
    report(rounds, args, datasets, data_bytes, skipped, loads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
