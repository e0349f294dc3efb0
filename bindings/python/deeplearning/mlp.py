"""TwoLayerMLP: the tutorial's Linear -> ReLU -> Linear classifier, built from
the standalone layers and trained by plain SGD in Python."""

from __future__ import annotations

import numpy as np

from numpy.typing import ArrayLike, DTypeLike

from .layers import Layer, Linear, ReLU
from .losses import CrossEntropyLoss


class TwoLayerMLP:
    """Linear(input_size, hidden_size) -> ReLU -> Linear(hidden_size, num_classes),
    trained on cross-entropy; 101,770 parameters with the defaults (MNIST).

    ``layers`` holds the three layers and ``loss_fn`` the loss, to use one by one.
    `seed` fixes both layers' initial weights; without it they are drawn from
    ``np.random`` (so ``np.random.seed`` reproduces them).
    """

    def __init__(self, input_size: int = 784, hidden_size: int = 128, num_classes: int = 10, *,
                 seed: int | None = None, dtype: DTypeLike = np.float64):
        first, second = (None, None) if seed is None else (
            int(s) for s in np.random.SeedSequence(seed).generate_state(2, np.uint64))
        self.layers: list[Layer] = [Linear(input_size, hidden_size, dtype=dtype, seed=first),
                                    ReLU(dtype=dtype),
                                    Linear(hidden_size, num_classes, dtype=dtype, seed=second)]
        self.loss_fn = CrossEntropyLoss(dtype=dtype)

    @property
    def param_count(self) -> int:
        """Number of trainable scalars."""
        return sum(p.size for layer in self.layers for p in layer.parameters.values())

    def forward(self, x: ArrayLike) -> np.ndarray:
        """The logits, (N, num_classes), of x (N, input_size)."""
        out = np.asarray(x)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    __call__ = forward

    def __repr__(self) -> str:
        first, second = self.layers[0], self.layers[2]
        assert isinstance(first, Linear) and isinstance(second, Linear)
        try:
            sizes = f"{first.in_features} -> {first.out_features} -> {second.out_features}"
            return f"<deeplearning.TwoLayerMLP {sizes}: {self.param_count:,} parameters>"
        except ValueError:   # closed layers
            return "<deeplearning.TwoLayerMLP (closed)>"

    def backward(self, dL_dy: ArrayLike) -> np.ndarray:
        """Back-propagates dL/dlogits through the layers; returns dL/dx."""
        grad = np.asarray(dL_dy)
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    def update_parameters(self, lr: float) -> None:
        """Plain SGD on every parameter: p -= lr * dL/dp."""
        for layer in self.layers:
            gradients = layer.gradients
            for name, parameter in layer.parameters.items():
                parameter -= lr * gradients[name]

    def train_step(self, x: ArrayLike, y: ArrayLike, lr: float = 0.01) -> float:
        """Forward, loss, backward and one SGD step on the batch; returns the loss
        before the update. y: class indices (N,) or one-hot rows (N, num_classes)."""
        loss = self.loss_fn.forward(self.forward(x), y)
        self.backward(self.loss_fn.backward())
        self.update_parameters(lr)
        return loss

    def predict(self, x: ArrayLike) -> np.ndarray:
        """The class of largest logit for each sample, shape (N,)."""
        classes: np.ndarray = np.argmax(self.forward(x), axis=-1)
        return classes

    def evaluate(self, x: ArrayLike, y: ArrayLike) -> float:
        """The fraction in [0, 1] of samples predicted right; y as for train_step."""
        predicted = self.predict(x)
        y = np.asarray(y)
        labels = np.argmax(y, axis=-1) if y.ndim == predicted.ndim + 1 else y
        if labels.shape != predicted.shape:
            raise ValueError(f"y must hold {predicted.shape} class indices or one-hot rows, got "
                             f"shape {y.shape}")
        return float(np.mean(predicted == labels))

    def close(self) -> None:
        """Releases the layers' and the loss's library memory."""
        for part in (*self.layers, self.loss_fn):
            part.close()

    def __enter__(self) -> TwoLayerMLP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
