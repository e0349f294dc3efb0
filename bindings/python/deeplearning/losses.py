"""The tutorial's losses, computed by the library.

    loss = CrossEntropyLoss()
    value = loss.forward(logits, labels)    # a float: the mean over samples
    dL_dlogits = loss.backward()            # shaped like logits

Each loss is a library ``dl_loss`` computing in float64 (or float32 when made
with ``dtype=np.float32``). Predictions may have any shape: the last axis holds
one sample's values and the axes before it count samples, so a 1-D prediction
is a single sample.
"""

from __future__ import annotations

import numpy as np

from . import _arrays
from ._lib import DOUBLE, DTYPE_CODES, LOSS, call, lib
from ._native import Handle, NativeObject, rows_cols, spec_text


class Loss(NativeObject):
    """A library loss: ``forward(pred, target)`` returns the mean loss and keeps
    dL/dpred for ``backward()``."""

    def __init__(self, spec: dict, dtype=np.float64):
        super().__init__(dtype)
        pointer = call(lib.dl_loss_from_json, spec_text(spec), DTYPE_CODES[self.dtype], LOSS)
        self._handle = Handle(pointer, lib.dl_loss_free)
        self._pred_shape = None

    def _targets(self, target, pred: np.ndarray):
        """(labels, targets) for the library, exactly one of them None.

        Regression losses take values shaped exactly like `pred` (NumPy would
        broadcast (N, 1) against (N,) into (N, N) without a word; this refuses it).
        """
        values = _arrays.values(target, self.dtype, "target")
        if values.shape != pred.shape:
            raise ValueError(f"target must have the shape of the predictions, {pred.shape}, "
                             f"got {values.shape}")
        return None, values

    def forward(self, pred, target) -> float:
        """The mean loss of `pred` against `target`."""
        pred = _arrays.values(pred, self.dtype, "pred")
        labels, targets = self._targets(target, pred)
        value = call(lib.dl_loss_forward, self._h, pred, *rows_cols(pred.shape), labels, targets,
                     DOUBLE)
        self._pred_shape = pred.shape
        return value

    def backward(self) -> np.ndarray:
        """dL/dpred of the last forward, shaped like its predictions."""
        if self._pred_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        grad = np.empty(self._pred_shape, self.dtype)
        call(lib.dl_loss_backward, self._h, grad, grad.size)
        return grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dtype=np.{self.dtype})" + (" (closed)" if self.closed else "")


class MSELoss(Loss):
    """mean((pred - target)^2) over all elements; dL/dpred = 2 (pred - target) / size."""

    def __init__(self, *, dtype=np.float64):
        super().__init__({"type": "mse"}, dtype)


class HuberLoss(Loss):
    """Mean over all elements of d^2 / 2 where |d| <= delta, delta (|d| - delta / 2)
    elsewhere, d = pred - target; dL/dpred = d or delta * sign(d), over size."""

    def __init__(self, delta: float = 1.0, *, dtype=np.float64):
        self.delta = float(delta)
        super().__init__({"type": "huber", "delta": self.delta}, dtype)

    def __repr__(self) -> str:
        return f"HuberLoss(delta={self.delta!r}, dtype=np.{self.dtype})" + (
            " (closed)" if self.closed else "")


class CrossEntropyLoss(Loss):
    """Softmax of the logits, then the mean negative log-likelihood over samples.

    Logits (N, C) (or (C,) for one sample); the target is either integer class
    indices of shape (N,) (a plain int for one sample) or rows of shape (N, C),
    one-hot or probabilities. dL/dlogits = (softmax - one_hot) / N.
    """

    def __init__(self, *, dtype=np.float64):
        super().__init__({"type": "cross_entropy"}, dtype)

    def _targets(self, target, pred: np.ndarray):
        array = np.asarray(target)
        if pred.ndim >= 1 and array.shape == pred.shape[:-1]:
            rows, _ = rows_cols(pred.shape)
            return _arrays.labels(array.reshape(rows), rows, "target"), None
        if array.shape == pred.shape:
            return super()._targets(array, pred)
        raise ValueError(f"for logits of shape {pred.shape}, target must be class indices of "
                         f"shape {pred.shape[:-1]} or rows of shape {pred.shape}, got shape "
                         f"{array.shape}")
