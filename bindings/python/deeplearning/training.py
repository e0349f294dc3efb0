"""Model.fit: Keras's fit on arrays or on a Dataset, with validation, callbacks and progress."""

from __future__ import annotations

import math
import operator
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, SupportsIndex

import numpy as np

from ._interrupt import Progress
from ._lib import last_accuracy
from ._progress import ProgressBar
from .callbacks import Callback, CallbackList, History, Logs

if TYPE_CHECKING:
    from .data import Dataset
    from .model import Evaluation, Model

__all__ = ["History", "fit"]


def positive(value: SupportsIndex, name: str, minimum: int = 1) -> int:
    """`value` as an int of at least `minimum` (TypeError for a non-integer, ValueError below)."""
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


class _StopNow(Exception):
    """Raised inside a Dataset epoch's progress callback when a callback set
    ``model.stop_training``: it stops the library's epoch after that step."""


class _Arrays:
    """Training data held as NumPy arrays (checked by Model._data): Python's loop of
    train_step calls, shuffled with NumPy's generator."""

    def __init__(self, model: Model, x: np.ndarray, labels: np.ndarray | None, targets: np.ndarray | None):
        self.model, self.x, self.labels, self.targets = model, x, labels, targets

    @classmethod
    def checked(cls, model: Model, x: Any, y: Any, x_name: str = "x", y_name: str = "y") -> _Arrays:
        """(x, y) as the user gave them, checked and converted by Model._data."""
        return cls(model, *model._data(x, y, x_name, y_name))

    def __len__(self) -> int:
        return len(self.x)

    def sample(self) -> np.ndarray:
        sample: np.ndarray = self.x[:1000]
        return sample

    def split(self, fraction: float) -> tuple[_Arrays, _Arrays]:
        """(the first part, the last `fraction` of the samples), as Keras splits."""
        cut = len(self) - int(len(self) * fraction)

        def part(rows: slice) -> _Arrays:
            return _Arrays(self.model, self.x[rows], None if self.labels is None else self.labels[rows],
                           None if self.targets is None else self.targets[rows])

        return part(slice(0, cut)), part(slice(cut, None))

    def evaluate(self) -> Evaluation:
        return self.model._evaluate(self.x, self.labels, self.targets)

    def epoch(self, batch_size: int, shuffle: bool, rng: np.random.Generator,
              on_step: Callable[[Progress], None]) -> float:
        count, total, done, correct = len(self.x), 0.0, 0, 0.0
        order = rng.permutation(count) if shuffle else None
        batches = -(-count // batch_size)
        for b, start in enumerate(range(0, count, batch_size)):
            index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            batch_x = self.x[index]
            total += len(batch_x) * self.model._train_batch(
                batch_x,
                None if self.labels is None else self.labels[index],
                None if self.targets is None else self.targets[index])
            done += len(batch_x)
            accuracy = last_accuracy()
            correct = math.nan if accuracy is None else correct + accuracy * len(batch_x)
            try:
                on_step(Progress(b + 1, batches, done, total / done, None if math.isnan(correct) else correct / done))
            except _StopNow:
                break
        return total / done


class _DatasetSource:
    """A :class:`Dataset`: each epoch runs in the library (dl_train_epoch), reporting
    every step through its progress callback."""

    def __init__(self, model: Model, dataset: Dataset):
        self.model, self.dataset = model, dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self) -> np.ndarray:
        return self.dataset.x[:1000]

    def split(self, fraction: float) -> tuple[_DatasetSource, _DatasetSource]:
        first, last = self.dataset.split(fraction)
        return _DatasetSource(self.model, first), _DatasetSource(self.model, last)

    def evaluate(self) -> Evaluation:
        return self.model.evaluate_dataset(self.dataset)

    def epoch(self, batch_size: int, shuffle: bool, rng: np.random.Generator,
              on_step: Callable[[Progress], None]) -> float:
        last: list[Progress] = []

        def step(p: Progress) -> None:
            last[:] = [p]
            on_step(p)

        try:
            return self.model.train_epoch(self.dataset, batch_size, shuffle, step)
        except _StopNow:
            return last[0].mean_loss


def _source(model: Model, x: Any, y: Any, x_name: str = "x", y_name: str = "y") -> _Arrays | _DatasetSource:
    from .data import Dataset
    if isinstance(x, Dataset):
        if y is not None:
            raise TypeError(f"{y_name} must be None when {x_name} is a Dataset (it holds its own targets)")
        return _DatasetSource(model, x)
    return _Arrays.checked(model, x, y, x_name, y_name)


def _validation(model: Model, data: Any) -> _Arrays | _DatasetSource:
    from .data import Dataset
    if isinstance(data, Dataset):
        return _DatasetSource(model, data)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("validation_data must be a Dataset or a pair (x, y)")
    return _Arrays.checked(model, data[0], data[1], "validation x", "validation y")


def _warn_if_unscaled(model: Model, sample: np.ndarray) -> None:
    """Warns once per model when raw-looking inputs (values far beyond a few standard
    units, such as pixels 0..255) meet a model that applies no preprocessing."""
    if model._warned_unscaled or not len(sample):
        return
    if tuple(model.preprocessing) != (1.0, 0.0, 1.0):
        return
    largest = float(np.max(np.abs(sample)))
    if largest <= 20:
        return
    model._warned_unscaled = True
    flat = np.asarray(sample, np.float64)
    warnings.warn(
        f"the inputs look unscaled (values up to {largest:.4g}, mean {flat.mean():.4g}, std {flat.std():.4g}) "
        "and the model applies no preprocessing: training on such values is slow or diverges. "
        "Set model.preprocessing = (scale, mean, std), e.g. (1 / 255, *train.standardizer(1 / 255)) "
        "for pixels, or standardize x yourself.", UserWarning, stacklevel=4)


def _verbosity(verbose: Any) -> int:
    if verbose == "auto" or verbose is True:
        return 1
    if verbose is False:
        return 0
    level = operator.index(verbose)
    if level not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
    return level


def fit(model: Model, x: Any, y: Any = None, *, batch_size: int = 64, epochs: int = 1,
        verbose: int | bool | str = "auto", callbacks: Sequence[Callback] | None = None,
        validation_split: float = 0.0, validation_data: Any = None, shuffle: bool = True,
        initial_epoch: int = 0, seed: int | None = None) -> History:
    """Trains `model` on (x, y), or on a Dataset `x`, as Keras's ``Model.fit`` does.

    - Epochs ``initial_epoch`` to ``epochs - 1`` (Keras's numbering: ``epochs`` is the
      last epoch's number, so a resumed run passes the same `epochs`) of mini-batches of
      `batch_size`; the last batch of an epoch holds the remaining samples.
    - Arrays train through Python's loop of steps, shuffled (with `shuffle`) by
      ``numpy.random.default_rng(seed)``; with `seed` None it is derived from the
      model's spec seed and step count, so the same spec trained the same way repeats
      its run and a later call draws new orders. A :class:`~deeplearning.Dataset`
      trains inside the library (Model.train_epoch), shuffled by the model's own
      generator (checkpoints keep it); `seed` does not apply.
    - `validation_data`: a pair (x_val, y_val) or a Dataset; or `validation_split`, the
      fraction of samples taken from the end of x (before shuffling) to validate on.
    - `verbose`: 0 silent; 1 (or "auto") a live progress bar on a terminal and one line
      per epoch elsewhere; 2 one line per epoch. Written to stderr.
    - `callbacks`: :mod:`deeplearning.callbacks` objects. A History is always added and
      returned: ``history.history["loss"]`` and so on, one value per epoch. ``loss`` is
      the mean of the epoch's batch losses (each before its update); ``accuracy`` (for
      classifiers) is measured on the whole training set after the epoch; ``val_*`` on
      the validation data.

    - With a gradient reducer on several ranks (:mod:`deeplearning.distributed`), as
      ``mpirun dl train``: `batch_size` is per rank, arrays train as a Dataset that the
      library shards (one shuffle from the model's generator; `seed` does not apply), the
      figures are over all ranks, and only rank 0 reports.

    The spec's learning-rate schedule moves on after every epoch (and every step, for a
    per-step schedule), as in ``dl train``. Ctrl-C stops
    training after the step under way and raises KeyboardInterrupt; the model keeps
    every finished step.
    """
    epochs = positive(epochs, "epochs", 0)
    batch_size = positive(batch_size, "batch_size", 1)
    initial_epoch = positive(initial_epoch, "initial_epoch", 0)
    level = _verbosity(verbose)
    split = float(validation_split)
    if not 0 <= split < 1:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    if split and validation_data is not None:
        raise ValueError("pass validation_data or validation_split, not both")

    train = _source(model, x, y)
    validation = None if validation_data is None else _validation(model, validation_data)
    if split:
        train, validation = train.split(split)
        if not len(train) or not len(validation):
            raise ValueError(f"validation_split {split} leaves no samples on one side of {len(train) + len(validation)}")
    _warn_if_unscaled(model, train.sample())
    ranks = model._reducer[2] if model._reducer else 1
    if ranks > 1:
        # Data-parallel (deeplearning.distributed): as `dl train` under mpirun, the library
        # shards every step over the ranks, from one shuffle of the model's generator; only
        # rank 0 reports.
        if isinstance(train, _Arrays):
            from .data import Dataset
            train = _DatasetSource(model, Dataset.from_arrays(train.x, train.labels if train.labels is not None
                                                              else train.targets))
        if model._reducer[1] != 0:
            level = 0

    if seed is None:
        seed_value: Any = [model.spec.get("seed", 0), model.step_count]
    else:
        seed_value = seed
    rng = np.random.default_rng(seed_value)
    history = History()
    steps = -(-len(train) // (batch_size * ranks))
    listeners = CallbackList([*(callbacks or []), history], model,
                             {"epochs": epochs, "steps": steps, "batch_size": batch_size, "verbose": level})
    stream = sys.stderr if level else None
    is_dataset = isinstance(train, _DatasetSource)
    model.stop_training = False
    listeners.on_train_begin({})
    try:
        for epoch in range(initial_epoch, epochs):
            listeners.on_epoch_begin(epoch, {})
            bar = ProgressBar(f"epoch {epoch + 1}/{epochs}", steps, stream, live=None if level == 1 else False)

            def on_step(p: Progress) -> None:
                bar.update(p.done, loss=p.mean_loss, accuracy=p.accuracy)
                batch_logs: Logs = {"loss": p.mean_loss, "size": p.samples}
                if p.accuracy is not None:
                    batch_logs["accuracy"] = p.accuracy
                listeners.on_batch_end(p.done - 1, batch_logs)
                if model.stop_training:
                    raise _StopNow

            try:
                loss = train.epoch(batch_size, shuffle, rng, on_step)
                logs: Logs = {"loss": loss}
                accuracy = train.evaluate().accuracy
                if accuracy is not None:
                    logs["accuracy"] = accuracy
                if validation is not None:
                    val_loss, val_accuracy = validation.evaluate()
                    logs["val_loss"] = val_loss
                    if val_accuracy is not None:
                        logs["val_accuracy"] = val_accuracy
                bar.finish(**logs)
            finally:
                bar.close()
            if not is_dataset:
                model._end_epoch()      # the spec's schedule moves on, as train_epoch does it
            logs["learning_rate"] = model.learning_rate
            listeners.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:
        listeners.on_train_end({})
    return history
