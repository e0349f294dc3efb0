"""TwoLayerMLP: the tutorial's Linear -> ReLU -> Linear classifier, built from
the standalone layers and trained by plain SGD in Python."""

from __future__ import annotations

import numpy as np

from .layers import Linear, ReLU
from .losses import CrossEntropyLoss


class TwoLayerMLP:
    """Linear(input_size, hidden_size) -> ReLU -> Linear(hidden_size, num_classes),
    trained on cross-entropy; 101,770 parameters with the defaults (MNIST).

    ``layers`` holds the three layers and ``loss_fn`` the loss, to use one by one.
    `seed` fixes both layers' initial weights; without it they are drawn from
    ``np.random`` (so ``np.random.seed`` reproduces them).
    """

    def __init__(self, input_size: int = 784, hidden_size: int = 128, num_classes: int = 10, *,
                 seed=None, dtype=np.float64):
        first, second = (None, None) if seed is None else (
            int(s) for s in np.random.SeedSequence(seed).generate_state(2, np.uint64))
        self.layers = [Linear(input_size, hidden_size, dtype=dtype, seed=first),
                       ReLU(dtype=dtype),
                       Linear(hidden_size, num_classes, dtype=dtype, seed=second)]
        self.loss_fn = CrossEntropyLoss(dtype=dtype)

    @property
    def param_count(self) -> int:
        """Number of trainable scalars."""
        return sum(p.size for layer in self.layers for p in layer.parameters.values())

    def forward(self, x) -> np.ndarray:
        """The logits, (N, num_classes), of x (N, input_size)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def __repr__(self) -> str:
        first, _, second = self.layers
        try:
            sizes = f"{first.in_features} -> {first.out_features} -> {second.out_features}"
            return f"<deeplearning.TwoLayerMLP {sizes}: {self.param_count:,} parameters>"
        except ValueError:   # closed layers
            return "<deeplearning.TwoLayerMLP (closed)>"

    def backward(self, dL_dy) -> np.ndarray:
        """Back-propagates dL/dlogits through the layers; returns dL/dx."""
        for layer in reversed(self.layers):
            dL_dy = layer.backward(dL_dy)
        return dL_dy

    def update_parameters(self, lr: float) -> None:
        """Plain SGD on every parameter: p -= lr * dL/dp."""
        for layer in self.layers:
            gradients = layer.gradients
            for name, parameter in layer.parameters.items():
                parameter -= lr * gradients[name]

    def train_step(self, x, y, lr: float = 0.01) -> float:
        """Forward, loss, backward and one SGD step on the batch; returns the loss
        before the update. y: class indices (N,) or one-hot rows (N, num_classes)."""
        loss = self.loss_fn.forward(self.forward(x), y)
        self.backward(self.loss_fn.backward())
        self.update_parameters(lr)
        return loss

    def predict(self, x) -> np.ndarray:
        """The class of largest logit for each sample, shape (N,)."""
        return np.argmax(self.forward(x), axis=-1)

    def evaluate(self, x, y) -> float:
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

    def __exit__(self, *exc_info) -> None:
        self.close()
