"""Model.fit as Keras users know it: Datasets, validation, initial_epoch, History, callbacks,
the unscaled-input warning. References: train_epoch / train_step loops run by hand."""

from __future__ import annotations

import csv
import math

import h5py
import numpy as np
import pytest

import deeplearning as dl
from deeplearning import callbacks as cb

SPEC = {"input": {"size": 4}, "layers": [{"type": "linear", "units": 8}, {"type": "relu"},
                                          {"type": "linear", "units": 3}],
        "loss": "cross_entropy", "optimizer": {"type": "sgd", "lr": 0.2}, "seed": 5}


def arrays(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)


def dataset(path, x, y) -> dl.Dataset:
    with h5py.File(path, "w") as f:
        f["x"], f["y"] = x, y
    return dl.Dataset.load_hdf5(path)


def assert_same_params(a: dl.Model, b: dl.Model) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


class Recorder(cb.Callback):
    """Every hook call, in order."""

    def __init__(self):
        self.calls: list[tuple] = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, logs["loss"], logs["size"]))


def test_fit_on_a_dataset_is_train_epoch_with_history_and_callbacks(tmp_path):
    x, y = arrays(70)
    train = dataset(tmp_path / "train.h5", x, y)
    recorder = Recorder()
    with dl.Model(SPEC) as fitted, dl.Model(SPEC) as manual:
        with pytest.raises(TypeError, match="must be None"):
            fitted.fit(train, y)
        history = fitted.fit(train, epochs=2, batch_size=16, verbose=0, callbacks=[recorder],
                             validation_data=(x[:10], y[:10]))
        losses = [manual.train_epoch(train, batch_size=16) for _ in range(2)]
        assert_same_params(fitted, manual)
        assert history.history["loss"] == losses
        assert history.history["accuracy"][-1] == manual.evaluate_dataset(train).accuracy
        assert history.history["val_loss"][-1] == manual.evaluate(x[:10], y[:10]).loss
        assert history.epoch == [0, 1] and history.history["learning_rate"] == [0.2, 0.2]
    # Hooks: begin, 5 batches per epoch with the running loss, epoch end with the logs.
    kinds = [c[0] for c in recorder.calls]
    assert kinds == ["train_begin"] + (["epoch_begin"] + ["batch_end"] * 5 + ["epoch_end"]) * 2 + ["train_end"]
    batches = [c for c in recorder.calls if c[0] == "batch_end"][:5]
    assert [b[1] for b in batches] == [0, 1, 2, 3, 4] and [b[3] for b in batches] == [16, 32, 48, 64, 70]
    assert batches[-1][2] == losses[0]
    assert recorder.calls[7][2] == {k: v[0] for k, v in history.history.items()}


def test_validation_split_takes_the_last_samples_before_shuffling():
    x, y = arrays(50)
    with dl.Model(SPEC) as split, dl.Model(SPEC) as explicit:
        a = split.fit(x, y, epochs=2, batch_size=8, validation_split=0.2, verbose=0)
        b = explicit.fit(x[:40], y[:40], epochs=2, batch_size=8, validation_data=(x[40:], y[40:]), verbose=0)
        assert a == b
        assert_same_params(split, explicit)
    with dl.Model(SPEC) as model:
        with pytest.raises(ValueError, match="validation_split"):
            model.fit(x, y, validation_split=1.0)
        with pytest.raises(ValueError, match="not both"):
            model.fit(x, y, validation_split=0.1, validation_data=(x, y))
        with pytest.raises(TypeError, match="pair"):
            model.fit(x, y, validation_data=[x])


def test_initial_epoch_resumes_the_numbering():
    x, y = arrays(20)
    recorder = Recorder()
    with dl.Model(SPEC) as model:
        history = model.fit(x, y, epochs=5, initial_epoch=3, verbose=0, callbacks=[recorder])
        assert history.epoch == [3, 4] and model.step_count == 2
    assert [c[1] for c in recorder.calls if c[0] == "epoch_begin"] == [3, 4]


@pytest.mark.parametrize("on_dataset", [False, True])
def test_stop_training_in_on_batch_end_stops_after_that_step(tmp_path, on_dataset):
    x, y = arrays(70)
    data = dataset(tmp_path / "d.h5", x, y) if on_dataset else None

    class StopAtThird(cb.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    with dl.Model(SPEC) as model, dl.Model(SPEC) as reference:
        args = (data,) if on_dataset else (x, y)
        history = model.fit(*args, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[StopAtThird()])
        for start in range(0, 48, 16):
            reference.train_step(x[start:start + 16], y[start:start + 16])
        assert model.step_count == 3 and history.epochs == 1
        assert_same_params(model, reference)


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = arrays(64)
    wrong = (y + 1) % 3        # validation labels that training makes worse and worse
    weights = []

    class Keep(cb.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights.append(self.model.get_weights())

    stop = cb.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    with dl.Model(SPEC) as model:
        history = model.fit(x, y, epochs=30, batch_size=16, validation_data=(x, wrong), verbose=0,
                            callbacks=[Keep(), stop])
        val = history.history["val_loss"]
        best = int(np.argmin(val))
        assert len(val) == best + 3 < 30          # two epochs without improvement, then stop
        assert stop.stopped_epoch == best + 2 and stop.best_epoch == best
        for now, then in zip(model.get_weights(), weights[best]):
            np.testing.assert_array_equal(now, then)


class Stub:
    """A stand-in model for callbacks tested on hand-made logs."""

    def __init__(self):
        self.stop_training = False
        self.learning_rate = 1.0
        self.saved: list[str] = []

    def get_weights(self):
        return []

    def save(self, path):
        self.saved.append(path)


def feed(callback, values, key="val_loss"):
    stub = Stub()
    callback.set_model(stub)
    callback.on_train_begin({})
    seen = []
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {key: value})
        seen.append((stub.stop_training, stub.learning_rate))
    return stub, seen


def test_early_stopping_patience_min_delta_and_mode():
    _, seen = feed(cb.EarlyStopping(patience=2), [1.0, 0.9, 0.95, 0.96, 0.97])
    assert [s for s, _ in seen] == [False, False, False, True, True]
    # An improvement smaller than min_delta does not count.
    _, seen = feed(cb.EarlyStopping(patience=2, min_delta=0.1), [1.0, 0.95, 0.92, 0.85])
    assert [s for s, _ in seen] == [False, False, True, True]
    # Accuracies improve upwards.
    _, seen = feed(cb.EarlyStopping(monitor="val_accuracy", patience=0), [0.5, 0.6, 0.55], "val_accuracy")
    assert [s for s, _ in seen] == [False, False, True]


def test_reduce_lr_on_plateau():
    _, seen = feed(cb.ReduceLROnPlateau(factor=0.5, patience=2, min_lr=0.2, cooldown=1),
                   [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    # Two epochs without improvement halve the rate; the cooldown epoch after it counts
    # towards nothing; never below min_lr.
    assert [lr for _, lr in seen] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2, 0.2]


def test_model_checkpoint_saves_the_best_only(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "m-{epoch:02d}-{val_loss:.1f}.h5", save_best_only=True)
    stub, _ = feed(checkpoint, [1.0, 0.5, 0.7, 0.25])
    assert stub.saved == [str(tmp_path / n) for n in ("m-01-1.0.h5", "m-02-0.5.h5", "m-04-0.2.h5")]


def test_model_checkpoint_writes_loadable_checkpoints(tmp_path):
    x, y = arrays(32)
    with dl.Model(SPEC) as model:
        model.fit(x, y, epochs=2, verbose=0, callbacks=[cb.ModelCheckpoint(tmp_path / "e{epoch}.h5")])
        with dl.load(tmp_path / "e2.h5") as last:
            assert_same_params(model, last)
            assert last.step_count == model.step_count


def test_learning_rate_scheduler_and_csv_logger(tmp_path):
    x, y = arrays(32)
    with dl.Model(SPEC) as model:
        history = model.fit(x, y, epochs=3, verbose=0, validation_data=(x, y),
                            callbacks=[cb.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1)),
                                       cb.CSVLogger(tmp_path / "log.csv")])
    assert history.history["learning_rate"] == [0.1, 0.05, 0.1 / 3]
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == pytest.approx(values, rel=1e-12)


def test_terminate_on_nan():
    stub = Stub()
    terminate = cb.TerminateOnNaN()
    terminate.set_model(stub)
    terminate.on_batch_end(0, {"loss": 1.0})
    assert not stub.stop_training
    terminate.on_batch_end(1, {"loss": math.nan})
    assert stub.stop_training


def test_callbacks_must_be_callbacks():
    x, y = arrays(8)
    with dl.Model(SPEC) as model, pytest.raises(TypeError, match="Callback"):
        model.fit(x, y, callbacks=[lambda: None])


def test_unscaled_inputs_warn_once_unless_the_model_preprocesses():
    x, y = arrays(40)
    raw = np.abs(x) * 255
    with dl.Model(SPEC) as model:
        with pytest.warns(UserWarning, match="unscaled.*preprocessing"):
            model.fit(raw, y, verbose=0)
        with warnings_as_errors():
            model.fit(raw, y, verbose=0)                        # once per model
    with dl.Model(SPEC) as model, warnings_as_errors():
        model.fit(x, y, verbose=0)                              # standard units: quiet
        model.preprocessing = (1 / 255, 0.5, 0.25)
        model.fit(raw, y, verbose=0)


def warnings_as_errors():
    import warnings
    manager = warnings.catch_warnings()
    manager.__enter__()
    warnings.simplefilter("error")

    class Exit:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            manager.__exit__(*exc)
    return Exit()


def test_keyboard_interrupt_from_a_callback_ends_training_cleanly(tmp_path):
    x, y = arrays(70)
    data = dataset(tmp_path / "d.h5", x, y)
    recorder = Recorder()

    class Interrupt(cb.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                raise KeyboardInterrupt

    with dl.Model(SPEC) as model:
        with pytest.raises(KeyboardInterrupt):
            model.fit(data, epochs=2, batch_size=16, verbose=0, callbacks=[recorder, Interrupt()])
        assert model.step_count == 2
        assert recorder.calls[-1] == ("train_end",)
        model.fit(data, epochs=1, batch_size=16, verbose=0)      # the model trains on
        assert model.step_count == 7


@pytest.mark.parametrize("on_dataset", [False, True])
def test_batch_logs_carry_the_running_training_accuracy(tmp_path, on_dataset):
    # Keras's running accuracy: samples whose class each step's forward pass (before its
    # update) got right, over the samples so far. Reference: predict, then train, by hand.
    x, y = arrays(50)

    class Accuracies(cb.Callback):
        def __init__(self) -> None:
            self.seen: list[float] = []

        def on_batch_end(self, batch, logs=None):
            self.seen.append(logs["accuracy"])

    recorder = Accuracies()
    with dl.Model(SPEC) as model, dl.Model(SPEC) as reference:
        train = dataset(tmp_path / "d.h5", x, y) if on_dataset else x
        model.fit(train, None if on_dataset else y, epochs=1, batch_size=16, shuffle=False, verbose=0,
                  callbacks=[recorder])
        correct, expected = 0, []
        for start in range(0, 50, 16):
            xb, yb = x[start:start + 16], y[start:start + 16]
            correct += int(np.sum(reference.predict_classes(xb) == yb))
            reference.train_step(xb, yb)
            expected.append(correct / (start + len(xb)))
        np.testing.assert_allclose(recorder.seen, expected, rtol=0, atol=1e-12)


def test_the_live_bar_shows_loss_and_accuracy():
    import io
    from deeplearning._progress import ProgressBar
    stream = io.StringIO()
    bar = ProgressBar("epoch 1/1", 10, stream, live=True, interval=0.0)
    bar.update(3, loss=0.5, accuracy=0.875)
    line = stream.getvalue()
    assert line.startswith("\r") and "3/10" in line and "loss 0.5000" in line and "accuracy 0.8750" in line
