"""Hostile integers, standalone layers given the wrong shape, and one model shared by
threads (issue 13: classes 3, 4 and 9, build items 5, 8 and 10).

The calls that could end the interpreter run in child processes: the test then
asserts that the child exited normally and printed the Python exception it caught.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import deeplearning as dl
from deeplearning._lib import MODEL, call, lib
from deeplearning.layers import Layer

XOR = {"input": {"size": 2}, "layers": [{"type": "linear", "units": 8}, {"type": "tanh"},
                                        {"type": "linear", "units": 2}],
       "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1}, "seed": 1}

HUGE = [-1, -2**63, 2**64, 2**64 + 5, 10**20]


def run_child(code: str) -> str:
    """Runs `code` in a fresh interpreter with this package; returns its stdout after
    asserting that it exited normally (status 0, no signal)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"child died with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


# -- Integers a C type cannot hold (class 9) ---------------------------------------------

@pytest.mark.parametrize("n", [10**20, 2**31, -2**31 - 1])
def test_set_num_threads_refuses_what_an_int_cannot_hold(n):
    before = dl.get_num_threads()
    with pytest.raises(dl.IntegerRangeError, match="set_num_threads") as caught:
        dl.set_num_threads(n)
    assert isinstance(caught.value, OverflowError) and isinstance(caught.value, ValueError)
    assert isinstance(caught.value, dl.DLError) and caught.value.status == dl.Status.INVALID_ARGUMENT
    assert dl.get_num_threads() == before          # nothing wrapped through to the library


def test_set_num_threads_still_clamps_what_an_int_holds():
    before = dl.get_num_threads()
    try:
        dl.set_num_threads(2**31 - 1)
        assert 1 <= dl.get_num_threads() <= 64
        dl.set_num_threads(-5)
        assert dl.get_num_threads() == 1
    finally:
        dl.set_num_threads(before)


@pytest.mark.parametrize("max_entries", [2**64, -1, 10**30])
def test_gradcheck_max_entries_out_of_range(xor_data, max_entries):
    x, y = xor_data
    with dl.Model(XOR) as model:
        with pytest.raises(dl.IntegerRangeError, match="max_entries"):
            model.gradcheck(x, y, max_entries=max_entries)
        assert model.gradcheck(x, y, max_entries=2**64 - 1).max_rel_error < 1e-2    # the largest size_t: all entries


@pytest.mark.parametrize("value", HUGE)
def test_every_size_argument_is_checked_before_the_call(value):
    """Each integer argument of each function: out of its C type's range is refused by
    name before the library sees it (the handles here are not even valid)."""
    from deeplearning._lib import _FUNCTIONS, _INTEGER_RANGES
    checked = 0
    for name, (_, argtypes) in _FUNCTIONS.items():
        for position, ctype in enumerate(argtypes):
            if ctype not in _INTEGER_RANGES:
                continue
            low, high = _INTEGER_RANGES[ctype]
            if low <= value <= high:
                continue
            args = [0 if t in _INTEGER_RANGES else None for t in argtypes]
            args[position] = value
            with pytest.raises(dl.IntegerRangeError, match=rf"{name}\(\) argument {position + 1}"):
                call(getattr(lib, name), *args)
            checked += 1
    assert checked >= 40


def test_direct_ctypes_calls_are_refused_too():
    """A call that bypasses call(): ctypes reports the same refusal as ArgumentError."""
    x = np.zeros((1, 2), np.float32)
    out = np.zeros(2, np.float32)
    with dl.Model(XOR) as model:
        with pytest.raises(ctypes.ArgumentError, match="IntegerRangeError"):
            lib.dl_predict(model._h, x, -1, out, out.size)
        with pytest.raises(ctypes.ArgumentError, match="IntegerRangeError"):
            lib.dl_predict(model._h, x, 1, out, 2**64)


def test_sizes_beyond_the_library_limit_are_its_invalid_argument(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("0,1,2\n1,3,4\n")
    for n in (2**63, 2**64 - 1, 2**31):
        with pytest.raises(dl.InvalidArgumentError, match="limit"):
            dl.Dataset.load_csv(csv, feature_count=n)
    with pytest.raises(dl.IntegerRangeError):
        dl.Dataset.load_csv(csv, feature_count=2**64)
    with dl.Model(XOR) as model, dl.Dataset.load_csv(csv, feature_count=2) as data:
        for batch in (2**63, 2**64 - 1, 2**31):
            with pytest.raises(dl.InvalidArgumentError, match="batch_size"):
                model.train_epoch(data, batch_size=batch)
        with pytest.raises(dl.IntegerRangeError):
            model.train_epoch(data, batch_size=2**64)
        assert model.step_count == 0
        model.train_epoch(data, batch_size=2**31 - 1)      # one batch of everything
        assert model.step_count == 1


def test_shapes_out_of_range_are_refused():
    with pytest.raises(dl.IntegerRangeError, match="dimension"):
        dl.BatchNorm((2**64, 1, 1))
    with pytest.raises(dl.InvalidArgumentError):
        dl.BatchNorm((2**63, 1, 1))


def test_hostile_integers_in_a_child_end_in_exceptions():
    out = run_child("""
        import numpy as np, deeplearning as dl
        from deeplearning._lib import call, lib, MODEL
        model = dl.Model({"input": {"size": 2}, "layers": [{"type": "linear", "units": 2}],
                          "loss": "mse", "optimizer": {"type": "sgd", "lr": 0.1}})
        x = np.zeros((4, 2), np.float32)
        out = np.zeros(8, np.float32)
        for count in (2**63 - 1, 2**63, 2**64 - 1, 2**62):
            for fn, args in ((lib.dl_predict, (model._h, x, count, out, 2**64 - 1)),
                             (lib.dl_train_step, (model._h, x, count, None, x, None)),
                             (lib.dl_evaluate, (model._h, x, count, None, x, None, None))):
                try:
                    call(fn, *args)
                except dl.DLError as e:
                    print(type(e).__name__)
        print("alive", model.step_count)
    """)
    lines = out.split()
    assert lines[-2:] == ["alive", "0"]
    assert set(lines[:-2]) == {"InvalidArgumentError"} and len(lines) == 14


# -- Standalone layers and the shape they were built for (class 4) -------------------------

@pytest.mark.parametrize("spec", [{"type": "flatten"}, {"type": "reshape", "shape": 1}, {"type": "batch_norm"}])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unshaped_standalone_layers_refuse_other_widths(spec, dtype):
    layer = Layer(spec, dtype)
    with pytest.raises(dl.InvalidArgumentError, match="expects 1 features per sample, got 8"):
        layer.forward(np.ones((3, 8)))
    y = layer.forward(np.arange(6.0).reshape(6, 1))     # the width it was built for
    assert y.shape == (6, 1)
    if spec["type"] != "batch_norm":
        np.testing.assert_array_equal(y, np.arange(6.0).reshape(6, 1))
    else:                                                # normalised over the batch: mean 0
        assert abs(float(y.mean())) < 1e-6
    layer.close()


@pytest.mark.parametrize("spec", [{"type": "dropout", "rate": 0.5}, {"type": "relu"}])
def test_a_refused_forward_keeps_the_last_one_for_backward(spec):
    # Found by fuzz_abi: a forward refused for a NaN had already resized the layer's saved
    # input, and the next backward (of the forward before) failed with an internal error.
    layer = Layer(spec, np.float64, 3)
    x = np.random.default_rng(1).standard_normal((1, 1)) + 2
    y = layer.forward(x)
    bad = np.ones((1, 6))
    bad[0, 2] = np.nan
    with pytest.raises(dl.NumericError):
        layer.forward(bad)
    dy = np.ones((1, 1))
    dx = layer.backward(dy)                      # still the first forward's backward
    np.testing.assert_array_equal(dx, y / x)     # the mask (dropout), 1 (relu)
    layer.close()


def test_shaped_batch_norm_refuses_more_features():
    layer = dl.BatchNorm((4,))
    with pytest.raises(ValueError):
        layer.forward(np.ones((3, 6)))
    raw = Layer({"type": "batch_norm"}, np.float64, 0, (4,))
    with pytest.raises(dl.InvalidArgumentError, match="expects 4 features per sample, got 6"):
        raw.forward(np.ones((3, 6)))
    x = np.random.default_rng(0).standard_normal((5, 4))
    y = raw.forward(x)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), atol=1e-12)
    raw.close()
    layer.close()


def test_standalone_layers_given_wide_input_in_a_child_raise():
    out = run_child("""
        import numpy as np, deeplearning as dl
        from deeplearning.layers import Layer
        for spec in ({"type": "flatten"}, {"type": "reshape", "shape": 1}, {"type": "batch_norm"}):
            layer = Layer(spec, np.float32)
            for cols in (8, 50_000_000):
                try:
                    layer.forward(np.ones((1, cols), np.float32))
                    print("no error")
                except dl.InvalidArgumentError as e:
                    print("refused")
        print("alive")
    """)
    assert out.split() == ["refused"] * 6 + ["alive"]


# -- One model, many threads (build item 8) -------------------------------------------------

CNN = {"input": {"shape": [1, 6, 6]},
       "layers": [{"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1}, {"type": "batch_norm"},
                  {"type": "relu"}, {"type": "max_pool2d", "kernel_size": 2}, {"type": "flatten"},
                  {"type": "dropout", "rate": 0.2}, {"type": "linear", "units": 4}],
       "loss": "cross_entropy", "optimizer": {"type": "adam", "lr": 0.01}, "seed": 2}


def _data(count: int):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((count, 36)).astype(np.float32)
    x[rng.random(x.shape) < 0.7] = 0
    return x, (np.arange(count) % 4).astype(np.int32)


def test_threads_predict_on_one_model_with_the_serial_results(run_threads):
    x, y = _data(50)
    with dl.Model(CNN) as model:
        model.train_step(x, y)
        expected, classes, evaluation = model.predict(x), model.predict_classes(x), model.evaluate(x, y)
        results: list[bool] = [False] * 4

        def work(i: int) -> None:
            same = True
            for _ in range(10):
                same = same and np.array_equal(model.predict(x), expected)
                same = same and np.array_equal(model.predict_classes(x), classes)
                same = same and model.evaluate(x, y) == evaluation
            results[i] = same

        run_threads(work, 4)      # no BusyError: inference shares the model
        assert results == [True] * 4


def test_a_train_step_among_predicting_threads_is_all_or_nothing():
    x, y = _data(40)
    with dl.Model(CNN) as model:
        model.train_step(x, y)
        before = model.predict(x)
        with model.clone() as after_model:
            after_model.train_step(x, y)
            after = after_model.predict(x)
            assert not np.array_equal(before, after)
            stop = threading.Event()
            torn: list[int] = []
            seen = {"before": 0, "after": 0, "busy": 0}

            def predict() -> None:
                while not stop.is_set():
                    try:
                        out = model.predict(x)
                    except dl.BusyError:
                        seen["busy"] += 1
                        continue
                    if np.array_equal(out, before):
                        seen["before"] += 1
                    elif np.array_equal(out, after):
                        seen["after"] += 1
                    else:
                        torn.append(1)

            threads = [threading.Thread(target=predict) for _ in range(3)]
            for t in threads:
                t.start()
            try:
                for _ in range(100_000):
                    try:
                        model.train_step(x, y)
                        break
                    except dl.BusyError:
                        pass
                else:
                    pytest.fail("the train step never got the model")
                for _ in range(200):     # let them see the new model too
                    if seen["after"] >= 3:
                        break
                    threading.Event().wait(0.01)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            assert not torn and seen["before"] + seen["after"] > 0
            assert model.step_count == after_model.step_count
            np.testing.assert_array_equal(model.predict(x), after)


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the processes whose parent is `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry), fields[0]))
    return found


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_host_leaves_no_hdf5_reader_behind():
    # A checkpoint on which libhdf5 loops (a fuzzing find): the reader child spins until
    # its deadline. Killing the host mid-load must take the reader with it, not leave an
    # orphan spinning forever.
    from pathlib import Path
    path = Path(__file__).resolve().parents[3] / "fuzz/regressions/checkpoint/libhdf5-loops-until-the-reader-deadline.h5"
    host = subprocess.Popen([sys.executable, "-c", f"import deeplearning as dl; dl.load({str(path)!r})"],
                            env={**os.environ, "DL_HDF5_TIMEOUT_MS": "60000"})
    try:
        readers: list[tuple[int, str]] = []
        for _ in range(100):                      # wait for the load to fork its reader
            time.sleep(0.1)
            readers = _children(host.pid)
            if readers:
                break
        assert readers, "the load did not start a reader process"
        time.sleep(0.5)
        assert host.poll() is None                # still loading: libhdf5 loops
    finally:
        host.kill()
        host.wait()
    for _ in range(50):
        states = [_state(pid) for pid, _ in readers]
        if all(s in (None, "Z", "X") for s in states):
            break
        time.sleep(0.1)
    assert all(s in (None, "Z", "X") for s in states), f"reader processes still running: {readers} {states}"
