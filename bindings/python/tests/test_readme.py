"""Every Python snippet of README.md and bindings/python/README.md runs as written.

Each snippet is a whole program, run in a fresh interpreter in a folder holding
`specs/` (the repository's) and `data/mnist/`: a small synthetic MNIST written here
in the IDX format (a class's digit is a bright bar at its own row), so the quick
start's loading code runs unchanged and its model has something to learn.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
READMES = [REPO / "README.md", REPO / "bindings" / "python" / "README.md"]


def snippets() -> list[tuple[str, int, str]]:
    found = []
    for readme in READMES:
        text = readme.read_text()
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            line = text.count("\n", 0, match.start()) + 1
            found.append((readme.relative_to(REPO).as_posix(), line, match.group(1)))
    return found


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def synthetic_mnist(folder: Path, count: int, prefix: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.integers(0, 60, (count, 28, 28))
    for i, label in enumerate(labels):
        images[i, 2 + 2 * label:4 + 2 * label, 4:24] = 255
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    (folder / "specs").symlink_to(REPO / "specs")
    mnist = folder / "data" / "mnist"
    mnist.mkdir(parents=True)
    synthetic_mnist(mnist, 3000, "train", 1)
    synthetic_mnist(mnist, 500, "t10k", 2)
    return folder


def test_the_readmes_have_python_snippets():
    counts = {name: sum(1 for s in snippets() if s[0] == name) for name, _, _ in snippets()}
    assert counts == {"README.md": 2, "bindings/python/README.md": 4}


@pytest.mark.parametrize("source, line, code", snippets(), ids=lambda v: str(v) if isinstance(v, int) else None)
def test_snippet_runs(workdir, source, line, code):
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONWARNINGS": "error::UserWarning"})
    assert result.returncode == 0, f"{source}:{line}\n{result.stdout}\n{result.stderr}"
