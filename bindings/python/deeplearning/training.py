"""Model.fit: epochs of shuffled mini-batches, with a progress bar and a History."""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass, field

import numpy as np

from ._progress import ProgressBar


@dataclass
class History:
    """Per-epoch results of :func:`fit`, one list entry per epoch.

    ``loss`` is the mean of the epoch's mini-batch losses (each taken before its
    update, weighted by batch size); ``accuracy`` is measured on the whole
    training set after the epoch (None for regression losses). ``val_loss`` and
    ``val_accuracy`` are measured on the validation data after each epoch and
    stay empty without validation data.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float | None] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.loss)


def _positive(value, name: str, minimum: int) -> int:
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def fit(model, x, y, epochs: int = 1, batch_size: int = 64, shuffle: bool = True,
        validation_data=None, seed: int | None = None, verbose: bool = True) -> History:
    """Trains `model` on (x, y) for `epochs` passes of mini-batches of `batch_size`.

    The last batch of an epoch holds the remaining samples, so every sample is
    used once per epoch. With `shuffle` the samples are visited in a new random
    order each epoch, drawn with ``numpy.random.default_rng(seed)``; the
    library's own generator is not involved. When `seed` is None it is derived
    from the model: its spec's ``seed`` and its current step count, so the same
    spec trained the same way gives the same run, and a later call (or a run
    resumed from a checkpoint) gets new orders rather than repeating the first.

    `validation_data` is an optional pair (x_val, y_val) evaluated after each
    epoch. With `verbose`, a progress bar on stderr shows batches done, the
    running loss and the time left, and each epoch ends with a summary line.
    """
    epochs = _positive(epochs, "epochs", 0)
    batch_size = _positive(batch_size, "batch_size", 1)
    x, labels, targets = model._data(x, y)
    validation = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x, y)")
        validation = model._data(*validation_data, "validation x", "validation y")
    if seed is None:
        seed = [model.spec.get("seed", 0), model.step_count]
    rng = np.random.default_rng(seed)
    count = len(x)
    batches = -(-count // batch_size)
    history = History()
    for epoch in range(epochs):
        order = rng.permutation(count) if shuffle else None
        bar = ProgressBar(f"epoch {epoch + 1}/{epochs}", batches, sys.stderr if verbose else None)
        try:
            total = 0.0
            for b, start in enumerate(range(0, count, batch_size)):
                index = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
                batch_x = x[index]
                total += len(batch_x) * model._train_batch(
                    batch_x,
                    None if labels is None else labels[index],
                    None if targets is None else targets[index])
                bar.update(b + 1, loss=total / (start + len(batch_x)))
            history.loss.append(total / count)
            history.accuracy.append(model._evaluate(x, labels, targets).accuracy)
            summary = {"loss": history.loss[-1], "acc": history.accuracy[-1]}
            if validation is not None:
                val_loss, val_accuracy = model._evaluate(*validation)
                history.val_loss.append(val_loss)
                history.val_accuracy.append(val_accuracy)
                summary.update(val_loss=val_loss, val_acc=val_accuracy)
            bar.finish(**summary)
        finally:
            bar.close()
        model._end_epoch()          # the spec's per-epoch schedule moves on, as in dl train
    return history
