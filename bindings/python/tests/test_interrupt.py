"""Long calls report progress and stop on request: dl_model_set_progress seen from Python.

An epoch stopped after k steps (by a Progress callback's exception or by Ctrl-C)
must leave the model exactly as k train_step calls on the same batches do. Ctrl-C
is tested in child processes: one that sends itself SIGINT from another thread while
the library is busy, and one interrupted by its parent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import deeplearning as dl

SPEC = {"input": {"size": 8}, "layers": [{"type": "linear", "units": 16}, {"type": "relu"},
                                          {"type": "linear", "units": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.1, "lr_decay": 0.5}, "seed": 3}


def data(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)


def dataset(path, count: int):
    x, y = data(count)
    with h5py.File(path, "w") as f:
        f["x"], f["y"] = x, y
    return dl.Dataset.load_hdf5(path), x, y


def assert_same_params(a: dl.Model, b: dl.Model) -> None:
    for name in a.param_names:
        np.testing.assert_array_equal(a.get_param(name), b.get_param(name), err_msg=name)


def test_progress_reports_every_step_and_evaluation_chunk(tmp_path):
    train, _, _ = dataset(tmp_path / "d.h5", 70)
    seen: list[dl.Progress] = []
    with dl.Model(SPEC) as model:
        loss = model.train_epoch(train, batch_size=16, progress=seen.append)
        assert [p.done for p in seen] == [1, 2, 3, 4, 5] and {p.total for p in seen} == {5}
        assert [p.samples for p in seen] == [16, 32, 48, 64, 70]
        assert seen[-1].mean_loss == loss
        seen.clear()
        evaluation = model.evaluate_dataset(train, progress=seen.append)
        assert seen[-1] == dl.Progress(1, 1, 70, evaluation.loss, evaluation.accuracy)


def test_progress_and_train_step_report_the_training_accuracy_keras_shows(tmp_path):
    # The fraction of samples so far whose class each step's forward pass (before the
    # update) got right: the reference predicts every batch, then trains on it.
    train, x, y = dataset(tmp_path / "d.h5", 70)
    seen: list[dl.Progress] = []
    with dl.Model(SPEC) as model, dl.Model(SPEC) as reference, dl.Model(SPEC) as stepped:
        model.train_epoch(train, batch_size=16, shuffle=False, progress=seen.append)
        correct = 0
        for i, start in enumerate(range(0, 70, 16)):
            xb, yb = x[start:start + 16], y[start:start + 16]
            right = int(np.sum(reference.predict_classes(xb) == yb))
            correct += right
            reference.train_step(xb, yb)
            assert seen[i].accuracy == pytest.approx(correct / (start + len(xb)), abs=1e-12)
            fit_logs = stepped.train_step(xb, yb)
            assert dl._lib.last_accuracy() == pytest.approx(right / len(xb), abs=1e-12), fit_logs
        assert 0 < correct < 70            # neither trivially right nor wrong
    regression = {"input": {"size": 8}, "layers": [{"type": "linear", "units": 1}], "loss": "mse",
                  "optimizer": {"type": "sgd", "lr": 0.01}, "seed": 1}
    with dl.Model(regression) as model:
        model.train_step(x[:4], y[:4, None].astype(np.float32))
        assert dl._lib.last_accuracy() is None


class Stop(Exception):
    pass


def test_an_exception_from_progress_stops_the_epoch_after_that_step(tmp_path):
    train, x, y = dataset(tmp_path / "d.h5", 70)

    def stop_at_three(p: dl.Progress) -> None:
        if p.done == 3:
            raise Stop

    with dl.Model(SPEC) as model, dl.Model(SPEC) as reference:
        with pytest.raises(Stop):
            model.train_epoch(train, batch_size=16, shuffle=False, progress=stop_at_three)
        for start in range(0, 48, 16):
            reference.train_step(x[start:start + 16], y[start:start + 16])
        assert model.step_count == 3
        assert_same_params(model, reference)
        assert model.learning_rate == 0.1               # the unfinished epoch's decay not applied
        with pytest.raises(Stop):
            model.evaluate_dataset(train, progress=_raise)
        # The callback is gone afterwards: the next epoch runs whole.
        model.train_epoch(train, batch_size=16)
        assert model.step_count == 8 and model.learning_rate == 0.05


def _raise(p: dl.Progress) -> None:
    raise Stop


# A child process trains until SIGINT stops it; it prints one JSON line of what it saw.
CHILD = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import h5py, numpy as np
    import deeplearning as dl
    # A shell's background job starts with SIGINT ignored, and Python keeps that: give the
    # child the disposition of a program run from a terminal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    spec = json.loads(sys.argv[1])
    x = np.random.default_rng(0).standard_normal((20000, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    with h5py.File(sys.argv[2], "w") as f:
        f["x"], f["y"] = x, y
    train = dl.Dataset.load_hdf5(sys.argv[2])
    model, start = dl.Model(spec), dl.Model(spec)
    steps = [0]                        # steps finished, as the progress callback saw them
    def progress(p):
        steps[0] = p.done
        if p.done == 1 and sys.argv[3] == "parent":
            print("training", flush=True)  # the parent sends SIGINT on this line
    sent = {}
    def interrupt():                    # sends SIGINT while the library is mid-epoch
        while steps[0] < 40:
            time.sleep(0.001)
        sent["after"] = steps[0]
        os.kill(os.getpid(), signal.SIGINT)
    if sys.argv[3] == "self":
        threading.Thread(target=interrupt, daemon=True).start()
    try:
        for epoch in range(1000):
            model.train_epoch(train, batch_size=4, shuffle=False, progress=progress)
        print(json.dumps({"interrupted": False}))
        sys.exit(0)
    except KeyboardInterrupt:
        stopped = time.monotonic()
    for i in range(0, model.step_count * 4, 4):       # the same steps, one by one
        start.train_step(x[i:i + 4], y[i:i + 4])
    same = all(np.array_equal(model.get_param(n), start.get_param(n)) for n in model.param_names)
    model.save(sys.argv[2] + ".model.h5")
    loaded = dl.Model.load(sys.argv[2] + ".model.h5")
    print(json.dumps({"interrupted": True, "steps": model.step_count, "sent_after": sent.get("after"),
                      "same_as_steps": same, "lr": model.learning_rate,
                      "predicts": bool(np.array_equal(loaded.predict(x[:5]), model.predict(x[:5]))),
                      "handler_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler}))
""")


def child(tmp_path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(SPEC), str(tmp_path / "data.h5"), mode],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())


def check_stopped(report: dict) -> None:
    assert report["interrupted"], report
    assert 0 < report["steps"] < 5000, report         # mid-epoch: an epoch has 5000 steps
    assert report["same_as_steps"] and report["predicts"] and report["handler_restored"], report
    assert report["lr"] == 0.1, report                 # no epoch was counted


def test_sigint_while_the_library_trains_stops_within_a_step(tmp_path):
    process = child(tmp_path, "self")
    out, _ = process.communicate(timeout=300)
    report = json.loads(out.splitlines()[-1])
    check_stopped(report)
    # The signal arrives during some step after `sent_after` steps; the callback after the
    # next finished step (or the one after, if it came in just as a callback returned) stops.
    assert report["sent_after"] <= report["steps"] <= report["sent_after"] + 2, report


def test_ctrl_c_from_the_parent_raises_keyboard_interrupt(tmp_path):
    process = child(tmp_path, "parent")
    assert process.stdout.readline() == "training\n"
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=300)
    print(f"stopped {time.monotonic() - sent:.3f} s after SIGINT, including the checks")  # for the record only
    assert process.returncode == 0
    check_stopped(json.loads(out.splitlines()[-1]))
