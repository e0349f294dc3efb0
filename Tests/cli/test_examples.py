"""The tutorial's programs (docs/tutorial-c.md, docs/tutorial-swift.md) built as a reader
builds them and run on a small synthetic MNIST folder written here: the C program
compiled against Include/ and build/libdeeplearning.so, the Swift package built as a
consumer of this repository by a local git URL and a version tag. Both must train the
very bits `dl train specs/mnist_mlp.json` trains on the same data (the same model, seed,
standardization and epochs), and learn.

Needs build/libdeeplearning.so (CMake) and $DL_COMMAND (or .build/debug/dl); the Swift
package resolves the library's own dependencies as `swift build` does.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 2


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(array, np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """MNIST's layout with 28 x 28 noise images of 10 classes: class c brightens rows
    2c + 4 and 2c + 5."""
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 640), ("t10k", 160)):
        y = rng.integers(0, 10, count).astype(np.uint8)
        x = rng.integers(0, 90, (count, 28, 28))
        for row in (4, 5):
            x[np.arange(count), 2 * y + row, 3:25] += 160
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x.astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y)
    return folder


@pytest.fixture(scope="module")
def reference(mnist, tmp_path_factory):
    """dl train's checkpoint of specs/mnist_mlp.json on the same data."""
    dl = os.environ.get("DL_COMMAND") or str(ROOT / ".build" / "debug" / "dl")
    if not os.access(dl, os.X_OK):
        pytest.skip(f"no dl command at {dl} (set DL_COMMAND, or swift build --product dl)")
    out = tmp_path_factory.mktemp("dl") / "mnist_mlp.h5"
    subprocess.run([dl, "train", ROOT / "specs" / "mnist_mlp.json", "--data", mnist, "--epochs", str(EPOCHS),
                    "--batch-size", "64", "--out", out], check=True, capture_output=True, timeout=600)
    return out


def same_training(checkpoint, reference):
    with h5py.File(checkpoint) as a, h5py.File(reference) as b:
        for group in ("parameters", "training"):
            for name in b[group]:
                np.testing.assert_array_equal(a[group][name][()], b[group][name][()], err_msg=name)
        assert a["training"].attrs["epoch"] == EPOCHS


def check_output(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("epoch ")]
    assert len(lines) == EPOCHS, stdout
    accuracy = float(lines[-1].rsplit("test accuracy ", 1)[1].rstrip("%"))
    assert accuracy > 90, stdout   # the synthetic classes are easy: it learned


def test_c_tutorial_program(mnist, reference, tmp_path):
    library = ROOT / "build" / "libdeeplearning.so"
    if not library.exists():
        pytest.skip("build/libdeeplearning.so is not built (cmake --build build)")
    program = tmp_path / "mnist_mlp"
    # The tutorial's build command, with warnings as errors.
    subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                    "-I", ROOT / "Include", ROOT / "examples" / "c" / "mnist_mlp.c",
                    "-L", library.parent, "-ldeeplearning", f"-Wl,-rpath,{library.parent}", "-o", program],
                   check=True)
    checkpoint = tmp_path / "c.h5"
    run = subprocess.run([program, mnist, str(EPOCHS), checkpoint], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    check_output(run.stdout)
    same_training(checkpoint, reference)
    usage = subprocess.run([program], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr
    missing = subprocess.run([program, tmp_path / "nowhere"], capture_output=True, text=True)
    assert missing.returncode == 1 and "dl_dataset_load_mnist" in missing.stderr and "nowhere" in missing.stderr


def tracked_copy(destination: Path):
    """This repository's files as they are now (tracked and new, not ignored), committed
    in a fresh repository tagged 0.1.0: what a consumer clones by version."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-C", str(destination)]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"], ["tag", "0.1.0"]):
        subprocess.run(git + command, check=True)


def test_swift_package_depends_on_the_library_by_version(mnist, reference, tmp_path):
    swift = shutil.which("swift") or "/opt/swift/usr/bin/swift"
    repository = tmp_path / "deeplearning"   # the package's identity comes from this name
    tracked_copy(repository)
    consumer = tmp_path / "swift-mnist"
    shutil.copytree(ROOT / "examples" / "swift-mnist", consumer, ignore=shutil.ignore_patterns(".build", ".swiftpm"))
    environment = dict(os.environ, DEEPLEARNING_PACKAGE_URL=f"file://{repository}")
    start = time.monotonic()
    build = subprocess.run([swift, "build", "--package-path", consumer], env=environment, capture_output=True,
                           text=True, timeout=1800)
    seconds = time.monotonic() - start
    assert build.returncode == 0, build.stdout + build.stderr
    print(f"swift-mnist: consumer build (resolution and a debug build of the library) took {seconds:.0f} s",
          file=sys.stderr)
    resolved = (consumer / "Package.resolved").read_text()
    assert '"version" : "0.1.0"' in resolved and '"identity" : "deeplearning"' in resolved

    binary = subprocess.run([swift, "build", "--package-path", consumer, "--show-bin-path"], env=environment,
                            check=True, capture_output=True, text=True).stdout.strip()
    checkpoint = tmp_path / "swift.h5"
    run = subprocess.run([Path(binary) / "swift-mnist", mnist, str(EPOCHS), checkpoint], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    check_output(run.stdout)
    same_training(checkpoint, reference)
