#!/usr/bin/env python3
"""Write a copy of an IDX image set in which no pixel is background.

    python3 bench/make_textured.py data/mnist data/mnist-textured [--seed 0]

MNIST is mostly one value (about 81% of its pixels are 0), which kernels can
exploit; real images rarely are. This keeps every digit and label but paints
each image on its own random texture: a smooth gradient in a random direction
plus per-pixel noise, so neighbouring pixels differ, no two images share a
background level, and almost no pixel of a batch equals the same value in
every row. The strokes stay visible (max of stroke and texture), so the task
remains learnable and the benchmark's accuracy figures keep their meaning.

Reads and writes the four gzipped IDX files benchmark.py expects. Deterministic
for a given seed. Needs only NumPy.
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = raw[0] << 8 | raw[1], raw[2], raw[3]
    if zero != 0 or dtype != 0x08:
        raise SystemExit(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    tmp = path + ".tmp"
    with gzip.open(tmp, "wb", compresslevel=6) as f:
        f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())
    os.replace(tmp, path)


def find(folder, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise SystemExit(f"{folder}: no {stem}[.gz]")


def texture(images, rng):
    n, rows, cols = images.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    y, x = y / (rows - 1), x / (cols - 1)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    low = rng.uniform(20, 90, n).astype(np.float32)[:, None, None]
    span = rng.uniform(20, 90, n).astype(np.float32)[:, None, None]
    ramp = (np.cos(angle) * x + np.sin(angle) * y + 1.5) / 3.0  # 0..1
    noise = rng.normal(0, 18, images.shape).astype(np.float32)
    background = np.clip(low + span * ramp + noise, 1, 200)
    return np.maximum(images.astype(np.float32), background).round().astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.target, exist_ok=True)
    for stem in FILES:
        array = read_idx(find(args.source, stem))
        if "images" in stem:
            array = texture(array, rng)
            share = float(np.mean(array == 0))
            print(f"{stem}: {array.shape[0]} images, {share:.2%} zero pixels", file=sys.stderr)
        write_idx(os.path.join(args.target, stem + ".gz"), array)


if __name__ == "__main__":
    main()
