"""Independent NumPy versions of what the library computes, in float64.

They read only a model's spec and its parameters (through get_param), so they
check the library's forward pass, losses and SGD updates against the maths.
"""

from __future__ import annotations

import numpy as np
import scipy.special


def _sigmoid(x):
    with np.errstate(over="ignore"):        # exp(-x) -> inf gives 0, as it should
        return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (each row of logits)."""
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _gelu_tanh_u(x):
    return np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(_gelu_tanh_u(x)))
    return 0.5 * x * (1 + scipy.special.erf(x / np.sqrt(2)))


def _gelu_backward(x, dy, approximate="none"):
    if approximate == "tanh":
        t = np.tanh(_gelu_tanh_u(x))
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * np.sqrt(2 / np.pi) * (1 + 3 * 0.044715 * x ** 2))
    return dy * (0.5 * (1 + scipy.special.erf(x / np.sqrt(2))) + x * np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi))


def _softplus(x, beta=1.0, threshold=20.0):
    with np.errstate(over="ignore"):        # the branch np.where discards may overflow
        return np.where(beta * x > threshold, x, np.log1p(np.exp(beta * x)) / beta)


def _softmax_backward(x, dy):
    y = softmax(x)
    return y * (dy - np.sum(dy * y, axis=-1, keepdims=True))


# kind: (y = f(x, **options), dL/dx = g(x, dL/dy, **options)), with PyTorch's defaults.
ACTIVATIONS = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x, dy: dy * (x > 0)),
    "leaky_relu": (lambda x, alpha=0.01: np.where(x > 0, x, alpha * x),
                   lambda x, dy, alpha=0.01: np.where(x > 0, dy, alpha * dy)),
    "sigmoid": (_sigmoid, lambda x, dy: dy * _sigmoid(x) * (1 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x, dy: dy * (1 - np.tanh(x) ** 2)),
    "gelu": (_gelu, _gelu_backward),
    "silu": (lambda x: x * _sigmoid(x), lambda x, dy: dy * _sigmoid(x) * (1 + x * (1 - _sigmoid(x)))),
    "elu": (lambda x, alpha=1.0: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
            lambda x, dy, alpha=1.0: np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, 0)))),
    "softplus": (_softplus, lambda x, dy, beta=1.0, threshold=20.0: np.where(beta * x > threshold, dy,
                                                                              dy * _sigmoid(beta * x))),
    "softmax": (softmax, _softmax_backward),
}


def forward(model, x: np.ndarray) -> np.ndarray:
    """The model's raw outputs for x (N, input_size), from its spec and parameters."""
    h = np.asarray(x, np.float64).reshape(len(x), -1)
    for i, layer in enumerate(model.spec["layers"]):
        if layer["type"] == "linear":
            h = h @ model.get_param(f"layers.{i}.weight").astype(np.float64).T
            if layer.get("bias", True):
                h = h + model.get_param(f"layers.{i}.bias")
        else:
            h = activation(layer["type"], h, **{k: v for k, v in layer.items() if k != "type"})
    return h


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - target) ** 2))


def huber(pred: np.ndarray, target: np.ndarray, delta: float = 1.0) -> float:
    d = np.abs(np.asarray(pred, np.float64) - target)
    return float(np.mean(np.where(d <= delta, 0.5 * d ** 2, delta * (d - 0.5 * delta))))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def mlp_sgd_step(w1, b1, w2, b2, x, labels, lr):
    """One plain-SGD step of Linear -> ReLU -> Linear with cross-entropy, by hand.

    Returns (loss, new w1, b1, w2, b2); gradients as in the tutorial:
    dL/dW = dL/dy.T @ x, dL/db = sum(dL/dy), dL/dx = dL/dy @ W.
    """
    w1, b1, w2, b2, x = (np.asarray(a, np.float64) for a in (w1, b1, w2, b2, x))
    h_pre = x @ w1.T + b1
    h = np.maximum(h_pre, 0.0)
    logits = h @ w2.T + b2
    loss = cross_entropy(logits, labels)
    dlogits = softmax(logits)
    dlogits[np.arange(len(labels)), labels] -= 1.0
    dlogits /= len(labels)
    dw2, db2 = dlogits.T @ h, dlogits.sum(axis=0)
    dh = (dlogits @ w2) * (h_pre > 0)
    dw1, db1 = dh.T @ x, dh.sum(axis=0)
    return loss, w1 - lr * dw1, b1 - lr * db1, w2 - lr * dw2, b2 - lr * db2


# -- standalone layers and losses: forward and backward, as the tutorial writes them --

def activation(kind: str, x: np.ndarray, **options) -> np.ndarray:
    """An activation of x of any shape (softmax over the last axis)."""
    return ACTIVATIONS[kind][0](np.asarray(x, np.float64), **options)


def activation_backward(kind: str, x: np.ndarray, dy: np.ndarray, **options) -> np.ndarray:
    """dL/dx of an activation at x, from dL/dy."""
    return ACTIVATIONS[kind][1](np.asarray(x, np.float64), np.asarray(dy, np.float64), **options)


def linear_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray):
    """(dL/dx, dL/dW, dL/db) of y = x @ W.T + b, for x (N, in) and dy (N, out)."""
    return dy @ w, dy.T @ x, dy.sum(axis=0)


def loss_gradient(kind: str, pred: np.ndarray, target: np.ndarray, delta: float = 1.0) -> np.ndarray:
    """dL/dpred of the mean losses above; cross-entropy targets are class indices."""
    pred = np.asarray(pred, np.float64)
    if kind == "cross_entropy":
        grad = softmax(pred)
        grad[np.arange(len(target)), target] -= 1.0
        return grad / len(target)
    diff = pred - target
    if kind == "mse":
        return 2 * diff / diff.size
    if kind == "huber":
        return np.where(np.abs(diff) <= delta, diff, delta * np.sign(diff)) / diff.size
    raise NotImplementedError(kind)
