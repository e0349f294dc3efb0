"""Data-parallel training from Python (deeplearning.distributed).

In one process: reducers written here (a doubling one, as two identical ranks would sum)
against the plain step and NumPy; a reducer that raises. Under mpirun with mpi4py (skipped
when either is missing): fit on 2 and 3 ranks with per-rank batch 8 against fit in this
process with batch 16 and 24 (parameters within 2e-5: float32 sums in another order),
every rank the same bits; a NaN in one rank's data ends every rank with a message, no hang.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deeplearning as dl
from deeplearning import distributed

SPEC = {"input": {"size": 12}, "layers": [{"type": "linear", "units": 10}, {"type": "relu"},
                                          {"type": "linear", "units": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.05, "momentum": 0.9}, "seed": 11}


def data(count: int = 90) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.random((count, 12), dtype=np.float32)
    y = (x[:, :3].argmax(axis=1)).astype(np.int32)
    return x, y


def weights(model: dl.Model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in model.get_weights()])


def test_doubling_reducer_is_the_plain_step():
    a, b = dl.Model(SPEC), dl.Model(SPEC)
    seen: list[np.ndarray] = []

    def double(buffer: np.ndarray) -> None:
        seen.append(buffer.copy())
        buffer *= 2

    a.set_gradient_reducer(double, rank=1, world_size=2)
    assert distributed.rank(a) == 1 and distributed.world_size(a) == 2
    assert distributed.reduce_count(a) == a.param_count + 5
    x, y = data(16)
    for _ in range(3):
        la, lb = a.train_step(x, y), b.train_step(x, y)
        assert la == pytest.approx(lb, rel=1e-6)
    assert len(seen) == 3 and seen[0].dtype == np.float32 and len(seen[0]) == a.param_count + 5
    assert seen[0][-3] == 16 and seen[0][-2] == 0            # samples, failed ranks
    np.testing.assert_allclose(weights(a), weights(b), atol=1e-6)
    a.set_gradient_reducer(None)
    assert distributed.reduce_count(a) == 0 and distributed.world_size(a) == 1


def test_a_raising_reducer_fails_the_step_and_changes_nothing(capfd):
    model = dl.Model(SPEC)
    before = weights(model)

    def broken(buffer: np.ndarray) -> None:
        raise RuntimeError("network down")

    model.set_gradient_reducer(broken, 0, 2)
    x, y = data(8)
    with pytest.raises(dl.FileError, match="gradient reducer returned 1"):
        model.train_step(x, y)
    assert "network down" in capfd.readouterr().err
    np.testing.assert_array_equal(weights(model), before)
    with pytest.raises(dl.InvalidArgumentError, match="rank"):
        model.set_gradient_reducer(broken, 2, 2)


def mpirun() -> list[str]:
    launcher = shutil.which("mpirun")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py is not installed")
    if launcher is None:
        pytest.skip("mpirun is not installed")
    return [launcher, "--oversubscribe", "--allow-run-as-root", "--mca", "mpi_yield_when_idle", "1"]


def run_ranks(ranks: int, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", DL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([*mpirun(), "-np", str(ranks), sys.executable, str(Path(__file__).parent / "mpi_fit.py"),
                           str(out), *extra], capture_output=True, text=True, timeout=180, env=env)


@pytest.mark.parametrize("ranks", [2, 3])
def test_fit_on_ranks_is_fit_with_the_combined_batch(tmp_path, ranks):
    out = tmp_path / "fit.npz"
    result = run_ranks(ranks, out)
    assert result.returncode == 0, result.stdout + result.stderr
    got = np.load(out)
    single = dl.Model(SPEC)
    x, y = data()
    # Arrays given to fit on several ranks train as a Dataset, shuffled by the model's generator.
    history = single.fit(dl.Dataset.from_arrays(x, y), batch_size=8 * ranks, epochs=3, verbose=0)
    np.testing.assert_allclose(got["params"], weights(single), atol=2e-5)
    np.testing.assert_allclose(got["loss"], history.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(got["accuracy"], history.history["accuracy"], atol=1.5 / len(x))
    for r in range(ranks):
        np.testing.assert_array_equal(np.load(f"{out}.rank{r}.npy"), got["params"])   # every rank, same bits


def test_a_nan_on_one_rank_ends_every_rank_with_a_message(tmp_path):
    result = run_ranks(2, tmp_path / "nan.npz", "nan-on-rank-1")   # within the timeout: no hang
    assert result.returncode != 0
    # The ranks' lines may interleave (mpirun forwards each process's writes as they come).
    said = dict(re.findall(r"rank (\d): (.*?)\(model unchanged: True\)", result.stderr))
    assert set(said) == {"0", "1"}, result.stderr
    assert "the input contains NaN or infinite values" in said["1"]
    assert "1 of 2 ranks failed this training step" in said["0"]
