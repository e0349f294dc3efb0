"""Shared fixtures: the package (from the source tree when it is not installed),
the repository's specs/ folder, and small data sets."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]          # bindings/python
REPO_ROOT = PACKAGE_ROOT.parents[1]
if importlib.util.find_spec("deeplearning") is None:
    sys.path.insert(0, str(PACKAGE_ROOT))

import deeplearning as dl  # noqa: E402


def pytest_report_header(config):
    package = Path(dl.__file__).resolve().parent
    return [f"deeplearning {dl.__version__}: package {package}, library {dl.library_path}"]


@pytest.fixture(scope="session")
def run_threads():
    """run_threads(work, 4) -> runs work(0), ..., work(3) on four threads at once and joins them."""
    def run(work, count: int) -> None:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return run


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    return REPO_ROOT / "specs"


@pytest.fixture(scope="session")
def spec_path(specs_dir):
    """spec_path("xor") -> the path of specs/xor.json."""
    def path(name: str) -> Path:
        return specs_dir / f"{name}.json"
    return path


@pytest.fixture(scope="session")
def load_spec(spec_path):
    """load_spec("xor") -> specs/xor.json parsed, a new dict each call."""
    import json

    def load(name: str) -> dict:
        return json.loads(spec_path(name).read_text())
    return load


@pytest.fixture
def xor_data():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0], dtype=np.int32)
    return x, y


@pytest.fixture
def xor_model(spec_path):
    with dl.Model.from_spec(spec_path("xor")) as model:
        yield model


@pytest.fixture
def mnist_model(spec_path):
    with dl.Model.from_spec(spec_path("mnist_mlp")) as model:
        yield model


@pytest.fixture
def regression_model(spec_path):
    with dl.Model.from_spec(spec_path("regression")) as model:
        yield model


@pytest.fixture
def mnist_like():
    """64 random 'images' (N, 784) with labels in [0, 10)."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 784), dtype=np.float32), rng.integers(0, 10, 64)
