#!/usr/bin/env python3
"""The tutorial's MNIST recipe in plain NumPy: the reference the library is measured against.

    python3 bench/numpy_reference.py DATA_DIR [--epochs 5] [--seed 0]

DATA_DIR holds the four gzipped (or raw) IDX files that scripts/fetch_mnist.py
writes. The recipe, as the tutorial gives it:

- data: flatten to 784 float32 values, divide by 255, then standardize both
  splits with the training set's global mean and std;
- model: Linear(784, 128) -> ReLU -> Linear(128, 10), softmax cross-entropy;
  weights He-normal (std sqrt(2 / fan_in)), biases zero, all float32;
- training: plain SGD, lr 0.01, batch 64, 5 epochs, the training set
  reshuffled every epoch; as in the tutorial, the last partial batch of an
  epoch is dropped (937 steps of 64 per epoch).

One np.random.default_rng(seed) draws the initial weights and then every
epoch's permutation, so a run is reproducible. Per epoch it prints the mean
training loss and the accuracy on the whole training and test sets (the
tutorial samples 1,000 training images; the whole set is steadier). Training
time, wall and CPU, counts only the training steps, not the evaluations.

As a module: load_mnist(dir), init_params(rng), train(...), evaluate(...).
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np

IDX_UBYTE = 0x08


# MARK: Data

def read_idx(path):
    """An IDX file of unsigned bytes (gzipped if the name ends in .gz) as a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != IDX_UBYTE:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    rank = data[3]
    header = 4 + 4 * rank
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], dtype=">u4"))
    if len(shape) != rank or len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path}: length {len(data)} does not match dimensions {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_idx(data_dir, name):
    """DATA_DIR/name.gz, or DATA_DIR/name when only the raw file exists."""
    for candidate in (name + ".gz", name):
        path = os.path.join(data_dir, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{data_dir}: neither {name}.gz nor {name} (run scripts/fetch_mnist.py {data_dir})")


def load_mnist(data_dir):
    """((x_train, y_train), (x_test, y_test)) preprocessed as the tutorial does.

    x is float32 (N, 784): pixels / 255, then minus the training set's mean and
    divided by its std (both global over all pixels). y is int64 (N,).
    """
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(find_idx(data_dir, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(find_idx(data_dir, f"{prefix}-labels-idx1-ubyte"))
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{data_dir}: {prefix} has {images.shape[0]} images but {labels.shape[0]} labels")
        x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)
        splits.append((x, labels.astype(np.int64)))
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train), ((x_test - mean) / std, y_test)


# MARK: Model

def init_params(rng, sizes=(784, 128, 10)):
    """He-normal weights (out, in) with std sqrt(2 / fan_in), zero biases, float32."""
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = (rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        params += [w, np.zeros(fan_out, dtype=np.float32)]
    return params


def logits(params, x):
    w1, b1, w2, b2 = params
    return np.maximum(x @ w1.T + b1, 0) @ w2.T + b2


def train_step(params, x, y, lr):
    """One SGD step on a batch; returns the mean cross-entropy before the update."""
    w1, b1, w2, b2 = params
    z = x @ w1.T + b1                       # (B, 128)
    h = np.maximum(z, 0)
    out = h @ w2.T + b2                     # (B, 10)
    out -= out.max(axis=1, keepdims=True)   # softmax, stable
    p = np.exp(out)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    rows = np.arange(n)
    loss = -np.log(p[rows, y]).mean()
    dout = p
    dout[rows, y] -= 1
    dout /= n                               # d loss / d logits = (softmax - one_hot) / B
    dh = dout @ w2
    dh[z <= 0] = 0
    grads = (dh.T @ x, dh.sum(axis=0), dout.T @ h, dout.sum(axis=0))
    for param, grad in zip(params, grads):
        param -= lr * grad
    return float(loss)


def evaluate(params, x, y, chunk=10000):
    """Accuracy in [0, 1]."""
    correct = 0
    for start in range(0, len(x), chunk):
        correct += int((logits(params, x[start:start + chunk]).argmax(axis=1) == y[start:start + chunk]).sum())
    return correct / len(x)


def train(params, x_train, y_train, x_test, y_test, rng, epochs=5, batch_size=64, lr=0.01, log=print):
    """Trains params in place. Returns a dict: per-epoch history, wall and CPU seconds of training."""
    history, wall, cpu = [], 0.0, 0.0
    lr = np.float32(lr)
    steps = len(x_train) // batch_size
    for epoch in range(epochs):
        order = rng.permutation(len(x_train))
        xs, ys = x_train[order], y_train[order]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        total = 0.0
        for i in range(steps):
            batch = slice(i * batch_size, (i + 1) * batch_size)
            total += train_step(params, xs[batch], ys[batch], lr)
        epoch_wall, epoch_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        wall, cpu = wall + epoch_wall, cpu + epoch_cpu
        entry = {"epoch": epoch + 1, "loss": total / steps, "train_accuracy": evaluate(params, x_train, y_train),
                 "test_accuracy": evaluate(params, x_test, y_test), "wall_seconds": epoch_wall}
        history.append(entry)
        if log:
            log(f"epoch {entry['epoch']}/{epochs}  loss {entry['loss']:.4f}  "
                f"train {100 * entry['train_accuracy']:.2f}%  test {100 * entry['test_accuracy']:.2f}%  "
                f"({epoch_wall:.2f} s)")
    return {"history": history, "wall_seconds": wall, "cpu_seconds": cpu}


def main(argv=None):
    parser = argparse.ArgumentParser(description="The tutorial's MNIST recipe in plain NumPy.")
    parser.add_argument("data_dir", help="directory with the MNIST IDX files (see scripts/fetch_mnist.py)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        (x_train, y_train), (x_test, y_test) = load_mnist(args.data_dir)
    except (OSError, ValueError) as e:
        print(f"numpy_reference: error: {e}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(args.seed)
    params = init_params(rng)
    result = train(params, x_train, y_train, x_test, y_test, rng,
                   epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    print(f"training: {result['wall_seconds']:.2f} s wall, {result['cpu_seconds']:.2f} s CPU "
          f"(NumPy {np.__version__}, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, seed {args.seed})")
    print(f"test accuracy: {100 * result['history'][-1]['test_accuracy']:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
