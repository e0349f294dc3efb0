"""The tutorial's losses, computed by the library.

    loss = CrossEntropyLoss()
    value = loss.forward(logits, labels)    # a float: the mean over samples
    dL_dlogits = loss.backward()            # shaped like logits

Each loss is a library ``dl_loss`` computing in float64 (or float32 when made
with ``dtype=np.float32``). Predictions may have any shape: the last axis holds
one sample's values and the axes before it count samples, so a 1-D prediction
is a single sample. Options left out (None) take the library's defaults, which
``deeplearning.registry()["loss"]`` lists with every loss the library has; any
of them can be built from its spec with ``Loss({"type": ..., ...})``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _arrays
from ._lib import DOUBLE, DTYPE_CODES, LOSS, call, lib, registry
from ._native import Handle, NativeObject, rows_cols, spec_text


def _typed(value: Any, option: dict[str, Any]) -> Any:
    """A number option's value as a float (JSON writes 1.0 as 1)."""
    return float(value) if value is not None and option["schema"].get("type") == "number" else value


class Loss(NativeObject):
    """A library loss: ``forward(pred, target)`` returns the mean loss and keeps
    dL/dpred for ``backward()``. ``options`` holds every option's value, the
    library's defaults included."""

    def __init__(self, spec: dict[str, Any], dtype: DTypeLike = np.float64) -> None:
        super().__init__(dtype)
        pointer = call(lib.dl_loss_from_json, spec_text(spec), DTYPE_CODES[self.dtype], LOSS)
        self._handle = Handle(pointer, lib.dl_loss_free)
        self._pred_shape: tuple[int, ...] | None = None
        kind = next(k for k in registry()["loss"] if k["type"] == spec["type"])
        self.options = {o["name"]: _typed(spec.get(o["name"], o.get("default")), o) for o in kind["options"]}

    @staticmethod
    def _spec(type_: str, **options: Any) -> dict[str, Any]:
        """The spec of loss `type_` with the options given (not None)."""
        return {"type": type_, **{k: v for k, v in options.items() if v is not None}}

    def _targets(self, target: ArrayLike, pred: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(labels, targets) for the library, exactly one of them None.

        Regression losses take values shaped exactly like `pred` (NumPy would
        broadcast (N, 1) against (N,) into (N, N) without a word; this refuses it).
        """
        values = _arrays.values(target, self.dtype, "target")
        if values.shape != pred.shape:
            raise ValueError(f"target must have the shape of the predictions, {pred.shape}, "
                             f"got {values.shape}")
        return None, values

    def forward(self, pred: ArrayLike, target: ArrayLike) -> float:
        """The mean loss of `pred` against `target`."""
        pred = _arrays.values(pred, self.dtype, "pred")
        labels, targets = self._targets(target, pred)
        value = call(lib.dl_loss_forward, self._h, pred, *rows_cols(pred.shape), labels, targets,
                     DOUBLE)
        self._pred_shape = pred.shape
        return float(value)

    def backward(self) -> np.ndarray:
        """dL/dpred of the last forward, shaped like its predictions."""
        if self._pred_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward()")
        grad = np.empty(self._pred_shape, self.dtype)
        call(lib.dl_loss_backward, self._h, grad, grad.size)
        return grad

    def __repr__(self) -> str:
        shown = "".join(f"{k}={v!r}, " for k, v in self.options.items())
        return f"{type(self).__name__}({shown}dtype=np.{self.dtype})" + (" (closed)" if self.closed else "")


class MSELoss(Loss):
    """mean((pred - target)^2) over all elements; dL/dpred = 2 (pred - target) / size."""

    def __init__(self, *, dtype: DTypeLike = np.float64) -> None:
        super().__init__(self._spec("mse"), dtype)


class HuberLoss(Loss):
    """Mean over all elements of d^2 / 2 where |d| <= delta, delta (|d| - delta / 2)
    elsewhere, d = pred - target; dL/dpred = d or delta * sign(d), over size."""

    def __init__(self, delta: float | None = None, *, dtype: DTypeLike = np.float64) -> None:
        super().__init__(self._spec("huber", delta=None if delta is None else float(delta)), dtype)
        self.delta = self.options["delta"]


class BinaryCrossEntropyLoss(Loss):
    """PyTorch's BCEWithLogitsLoss: each value of `pred` is the logit of an
    independent yes/no (one per sample, or several per row for multi-label
    data), `target` holds probabilities in [0, 1] of the same shape. Mean over
    all elements of max(x, 0) - x t + log(1 + exp(-|x|)), computed stably;
    dL/dpred = (sigmoid(pred) - target) / size."""

    def __init__(self, *, dtype: DTypeLike = np.float64) -> None:
        super().__init__(self._spec("binary_cross_entropy"), dtype)


BCEWithLogitsLoss = BinaryCrossEntropyLoss


class CrossEntropyLoss(Loss):
    """Softmax of the logits, then the mean negative log-likelihood over samples.

    Logits (N, C) (or (C,) for one sample); the target is either integer class
    indices of shape (N,) (a plain int for one sample) or rows of shape (N, C),
    one-hot or probabilities. With ``label_smoothing`` e (PyTorch's), the target
    becomes (1 - e) target + e / C. dL/dlogits = (softmax - target) / N.
    """

    def __init__(self, label_smoothing: float | None = None, *, dtype: DTypeLike = np.float64) -> None:
        smoothing = None if label_smoothing is None else float(label_smoothing)
        super().__init__(self._spec("cross_entropy", label_smoothing=smoothing), dtype)
        self.label_smoothing = self.options["label_smoothing"]

    def _targets(self, target: ArrayLike, pred: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        array = np.asarray(target)
        if pred.ndim >= 1 and array.shape == pred.shape[:-1]:
            rows, _ = rows_cols(pred.shape)
            return _arrays.labels(array.reshape(rows), rows, "target"), None
        if array.shape == pred.shape:
            return super()._targets(array, pred)
        raise ValueError(f"for logits of shape {pred.shape}, target must be class indices of "
                         f"shape {pred.shape[:-1]} or rows of shape {pred.shape}, got shape "
                         f"{array.shape}")
