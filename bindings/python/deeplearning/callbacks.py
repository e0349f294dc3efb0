"""Keras-style callbacks for :meth:`Model.fit`.

    stop = dl.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    history = model.fit(x, y, epochs=50, validation_split=0.1, callbacks=[stop])
    history.history["val_loss"]

``fit`` calls, in order: ``on_train_begin``; per epoch ``on_epoch_begin``,
``on_batch_end`` after every step, ``on_epoch_end`` with the epoch's logs
(``loss``, ``accuracy`` for classifiers, ``val_loss`` and ``val_accuracy`` with
validation data, ``learning_rate``); ``on_train_end``. Epochs are numbered from
0, as in Keras. A callback stops training by setting ``model.stop_training =
True``: at the end of the epoch, or at once when set in ``on_batch_end``.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .model import Model

Logs = dict[str, Any]


class Callback:
    """The base class: every hook does nothing. ``self.model`` is the model being
    trained and ``self.params`` fit's settings (epochs, steps, batch_size, verbose)."""

    model: Model
    params: dict[str, Any]

    def set_model(self, model: Model) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_train_end(self, logs: Logs | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After step `batch` (from 0) of the epoch; ``logs["loss"]`` is the epoch's mean
        loss so far, ``logs["size"]`` the batch's sample count."""


class History(Callback):
    """What :meth:`Model.fit` returns: ``history`` maps each logged quantity ("loss",
    "accuracy", "val_loss", "val_accuracy", "learning_rate") to its list of per-epoch
    values, and ``epoch`` lists the epochs run (from ``initial_epoch``)."""

    def __init__(self) -> None:
        self.history: dict[str, list[Any]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    # The common keys as attributes: history.loss is history.history["loss"].
    def _series(self, key: str) -> list[Any]:
        return self.history.get(key, [])

    loss = property(lambda self: self._series("loss"))
    accuracy = property(lambda self: self._series("accuracy"))
    val_loss = property(lambda self: self._series("val_loss"))
    val_accuracy = property(lambda self: self._series("val_accuracy"))

    @property
    def epochs(self) -> int:
        """Epochs run."""
        return len(self.epoch)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, History) and (self.history, self.epoch) == (other.history, other.epoch)

    def __repr__(self) -> str:
        return f"<deeplearning.History: {self.epochs} epochs of {', '.join(self.history) or 'nothing'}>"


class _Monitor(Callback):
    """A callback that follows one logged quantity: `monitor`, better when smaller
    (mode "min"), larger ("max"), or as its name says ("auto": accuracies larger)."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.larger = mode == "max" or (mode == "auto" and "acc" in monitor)
        self.min_delta = abs(float(min_delta))
        self.best = -math.inf if self.larger else math.inf

    def _value(self, logs: Logs | None) -> float | None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ", ".join(logs or {}) or "nothing"
            print(f"{type(self).__name__}: {self.monitor!r} is not logged (logs: {available}); "
                  "pass validation data for val_* quantities", file=sys.stderr)
            return None
        return float(value)

    def _improved(self, value: float) -> bool:
        return value > self.best + self.min_delta if self.larger else value < self.best - self.min_delta


class EarlyStopping(_Monitor):
    """Stops training when `monitor` has not improved by more than `min_delta` for
    `patience` epochs in a row (0: at the first epoch without improvement). With `restore_best_weights`, the weights (and batch-norm
    statistics) of the best epoch are put back when it stops, or at the end."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0):
        super().__init__(monitor, mode, min_delta)
        self.patience, self.verbose, self.baseline = int(patience), verbose, baseline
        self.restore_best_weights, self.start_from_epoch = restore_best_weights, int(start_from_epoch)
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights: list[Any] | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = self.best_epoch = 0
        self.best_weights = None
        self.best = (-math.inf if self.larger else math.inf) if self.baseline is None else float(self.baseline)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = self._value(logs)
        if value is None or epoch < self.start_from_epoch:
            return
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping (best {self.monitor} "
                  f"{self.best:.6g} at epoch {self.best_epoch + 1})", file=sys.stderr)


class ModelCheckpoint(_Monitor):
    """Saves the model (an HDF5 checkpoint, :meth:`Model.save`) after every epoch, or
    with `save_best_only` only when `monitor` improved. `filepath` may hold format
    fields of the epoch (from 1) and the logs: ``"ckpt-{epoch:02d}-{val_loss:.3f}.h5"``."""

    def __init__(self, filepath: str | os.PathLike[str], monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, mode: str = "auto"):
        super().__init__(monitor, mode, 0.0)
        self.filepath, self.verbose, self.save_best_only = os.fspath(filepath), verbose, save_best_only

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_best_only:
            value = self._value(logs)
            if value is None or not self._improved(value):
                return
            self.best = value
        path = self.filepath.format(epoch=epoch + 1, **(logs or {}))
        self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved the model to {path}", file=sys.stderr)


class LearningRateScheduler(Callback):
    """Sets the learning rate at the start of every epoch to ``schedule(epoch, lr)``
    (epoch from 0, lr the current rate)."""

    def __init__(self, schedule: Callable[[int, float], float], verbose: int = 0):
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        rate = float(self.schedule(epoch, self.model.learning_rate))
        self.model.learning_rate = rate
        if self.verbose:
            print(f"Epoch {epoch + 1}: learning rate {rate:.6g}", file=sys.stderr)


class ReduceLROnPlateau(_Monitor):
    """Multiplies the learning rate by `factor` when `monitor` has not improved by more
    than `min_delta` for `patience` epochs, then waits `cooldown` epochs; never below
    `min_lr`."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0,
                 min_lr: float = 0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be between 0 and 1, got {factor}")
        super().__init__(monitor, mode, min_delta)
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self.wait = self.cooling = 0

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        value = self._value(logs)
        if value is None:
            return
        if self.cooling > 0:
            self.cooling -= 1
            self.wait = 0
        if self._improved(value):
            self.best, self.wait = value, 0
            return
        if self.cooling > 0:
            return
        self.wait += 1
        if self.wait >= self.patience:
            rate = max(self.model.learning_rate * self.factor, self.min_lr)
            if rate < self.model.learning_rate:
                self.model.learning_rate = rate
                if self.verbose:
                    print(f"Epoch {epoch + 1}: learning rate reduced to {rate:.6g}", file=sys.stderr)
            self.cooling, self.wait = self.cooldown, 0


class CSVLogger(Callback):
    """Writes one CSV row per epoch: ``epoch`` (from 0) and the logs' values, with a
    header row; with `append`, adds to an existing file (without a second header)."""

    def __init__(self, filename: str | os.PathLike[str], separator: str = ",", append: bool = False):
        self.filename, self.separator, self.append = os.fspath(filename), separator, append
        self._file: TextIO | None = None
        self._writer: Any = None
        self._keys: list[str] | None = None
        self._header = True

    def on_train_begin(self, logs: Logs | None = None) -> None:
        exists = self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0
        self._file = open(self.filename, "a" if self.append else "w", newline="")
        self._writer = csv.writer(self._file, delimiter=self.separator)
        self._keys = None
        self._header = not exists

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self._file is None:
            return
        logs = logs or {}
        if self._keys is None:
            self._keys = sorted(logs)
            if self._header:
                self._writer.writerow(["epoch", *self._keys])
        self._writer.writerow([epoch, *("" if logs.get(k) is None else logs[k] for k in self._keys)])
        self._file.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class TerminateOnNaN(Callback):
    """Stops training at once when a batch's running loss is NaN or infinite."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss {loss}, terminating training", file=sys.stderr)
            self.model.stop_training = True


class CallbackList:
    """Several callbacks called as one, History last so it sees the final logs."""

    def __init__(self, callbacks: list[Callback], model: Model, params: Mapping[str, Any]):
        for callback in callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be deeplearning.callbacks.Callback objects, got "
                                f"{type(callback).__name__}")
            callback.set_model(model)
            callback.set_params(dict(params))
        self.callbacks = callbacks

    def __getattr__(self, hook: str) -> Callable[..., None]:
        def run(*args: Any) -> None:
            for callback in self.callbacks:
                getattr(callback, hook)(*args)
        return run
