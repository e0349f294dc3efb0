"""Optimizers for hand-written training loops over the standalone layers.

    layers = [Linear(784, 128), ReLU(), Linear(128, 10)]
    optimizer = dl.optim.Adam(layers, lr=1e-3)
    ...
    loss_fn.forward(logits, y); backward through the layers ...
    optimizer.step()                     # updates every layer's parameters in place

They apply the formulas of specs/README.md (the library's own optimizers) to the
layers' parameter views with their gradients (left by each ``backward``), keeping
their state (velocities, moments) in arrays of the parameters' dtype.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np


class _HasParameters(Protocol):
    @property
    def parameters(self) -> dict[str, np.ndarray]: ...

    @property
    def gradients(self) -> dict[str, np.ndarray]: ...


class Optimizer:
    """Holds (parameter, gradient) view pairs of `layers`, in order; `lr` may be changed
    between steps."""

    def __init__(self, layers: Iterable[_HasParameters], lr: float):
        if not lr >= 0:
            raise ValueError(f"lr must be a number >= 0, got {lr}")
        self.lr = float(lr)
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        for layer in layers:
            gradients = layer.gradients
            self.pairs += [(p, gradients[name]) for name, p in layer.parameters.items()]
        self.steps = 0

    def step(self) -> None:
        """One update of every parameter from its current gradient."""
        self.steps += 1
        for i, (p, g) in enumerate(self.pairs):
            self._update(i, p, g)

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def _zeros(self) -> list[np.ndarray]:
        return [np.zeros_like(p) for p, _ in self.pairs]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr}, {len(self.pairs)} tensors, {self.steps} steps)"


class SGD(Optimizer):
    """p -= lr g; with momentum m > 0 the tutorial's v = m v - lr g; p += v."""

    def __init__(self, layers: Iterable[_HasParameters], lr: float = 0.01, momentum: float = 0.0):
        super().__init__(layers, lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)
        self.velocity = self._zeros() if momentum else []

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        if not self.momentum:
            p -= self.lr * g
            return
        v = self.velocity[i]
        v *= self.momentum
        v -= self.lr * g
        p += v


class Adam(Optimizer):
    """m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr m_hat / (sqrt(v_hat) + eps),
    m_hat and v_hat bias-corrected."""

    def __init__(self, layers: Iterable[_HasParameters], lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(layers, lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.m, self.v = self._zeros(), self._zeros()

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        m, v = self.m[i], self.v[i]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1 ** self.steps)
        v_hat = v / (1 - self.beta2 ** self.steps)
        p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class RMSprop(Optimizer):
    """s = rho s + (1 - rho) g^2; p -= lr g / (sqrt(s) + eps)."""

    def __init__(self, layers: Iterable[_HasParameters], lr: float = 0.01, rho: float = 0.99,
                 eps: float = 1e-8):
        super().__init__(layers, lr)
        self.rho, self.eps = float(rho), float(eps)
        self.s = self._zeros()

    def _update(self, i: int, p: np.ndarray, g: np.ndarray) -> None:
        s = self.s[i]
        s *= self.rho
        s += (1 - self.rho) * g * g
        p -= self.lr * g / (np.sqrt(s) + self.eps)


__all__ = ["Adam", "Optimizer", "RMSprop", "SGD"]
