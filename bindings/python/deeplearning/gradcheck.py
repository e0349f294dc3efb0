"""Gradient checking: back-propagated gradients against centred finite differences.

    np.random.seed(42)
    layer = Linear(10, 5)
    gradient_check(layer, np.random.randn(4, 10))           # prints the error, True if small
    gradient_check_weights(layer, np.random.randn(4, 10))

The helpers work on any object with the tutorial's interface (``forward`` and
``backward``; ``_w``, ``_b``, ``dL_dW``, ``dL_db`` for weights), the library's
layers as well as your own NumPy ones. Check in float64: float32 rounding alone
exceeds the tolerances.

The verdict is PyTorch's (``torch.autograd.gradcheck``): every entry of the
analytic gradient a must agree with the numerical one n as
``|a - n| <= atol + rtol * |n|`` (atol 1e-5, rtol 1e-3 by default). Unlike the
relative error it stays meaningful where a true gradient is zero, where both
a and n are rounding noise. Each check prints the max relative error (below
1e-7 excellent, 1e-7 to 1e-5 good for float64, above 1e-2 suspect where
gradients are not near zero) and the max absolute error, and returns the
verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Below this scale gradients are taken as zero, so that rounding noise around a
# gradient that is exactly zero is not reported as a 100% error.
_SMALLEST_SCALE = 1e-8


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, epsilon: float = 1e-5) -> np.ndarray:
    """dF/dx by centred differences, (f(x + e) - f(x - e)) / 2e, element by element.

    `f` is called as ``f(x)`` and returns a number; `x` is a float ndarray that
    is nudged in place (so it may be a layer's parameter view, and `f` may
    ignore its argument) and restored afterwards.
    """
    if not (isinstance(x, np.ndarray) and x.dtype.kind == "f"):
        raise TypeError("x must be a float ndarray: it is nudged in place")
    grad = np.zeros(x.shape, np.float64)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + epsilon
        above = f(x)
        x[index] = original - epsilon
        below = f(x)
        x[index] = original
        grad[index] = (above - below) / (2 * epsilon)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max|a - n| / max(max|a|, max|n|), the scale floored at 1e-8."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    scale = max(np.max(np.abs(analytic)), np.max(np.abs(numeric)), _SMALLEST_SCALE)
    return float(np.max(np.abs(analytic - numeric)) / scale)


def _output_weights(layer: Any, x: np.ndarray) -> np.ndarray:
    """Runs forward(x) and returns a fixed random r shaped like its output.

    The checks differentiate L = sum(forward(x) * r), whose dL/dy is r: unlike
    L = sum(y), it would notice two outputs swapped.
    """
    weights: np.ndarray = np.random.default_rng(0).standard_normal(np.shape(layer.forward(x)))
    return weights


ATOL, RTOL = 1e-5, 1e-3
"""PyTorch's gradcheck tolerances, the defaults of the checks below."""


def within_tolerance(analytic: np.ndarray, numeric: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> bool:
    """Whether every entry satisfies |a - n| <= atol + rtol * |n| (NaN fails)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    return bool(np.all(np.abs(analytic - numeric) <= atol + rtol * np.abs(numeric)))


def _report(pairs: list[tuple[np.ndarray, np.ndarray]], atol: float, rtol: float) -> bool:
    """Prints the largest relative and absolute errors over the (analytic,
    numeric) pairs; returns whether every entry of every pair is within tolerance."""
    relative = max(relative_error(a, n) for a, n in pairs)
    absolute = max(float(np.max(np.abs(np.asarray(a, np.float64) - n), initial=0.0)) for a, n in pairs)
    passed = all(within_tolerance(a, n, atol, rtol) for a, n in pairs)
    print(f"Max Relative Error: {relative:.2e} (max absolute error {absolute:.2e}; "
          f"|a - n| <= {atol:g} + {rtol:g} |n|: {'passed' if passed else 'FAILED'})")
    return passed


def gradient_check(layer: Any, x: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> bool:
    """Checks ``layer.backward``'s dL/dx at `x`; prints the max relative and
    absolute errors and returns whether every entry is within tolerance."""
    x = np.array(x, np.float64)            # a copy, nudged by numerical_gradient
    r = _output_weights(layer, x)
    analytic = layer.backward(r)
    numeric = numerical_gradient(lambda nudged: float(np.sum(layer.forward(nudged) * r)), x)
    layer.forward(x)                       # leaves the layer as forward(x) did
    return _report([(analytic, numeric)], atol, rtol)


def gradient_check_weights(layer: Any, x: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> bool:
    """Checks a Linear layer's ``dL_dW`` and ``dL_db`` at `x`, nudging ``_w`` and
    ``_b`` in place; prints the larger errors of the two and returns whether
    every entry of both is within tolerance."""
    x = np.array(x, np.float64)
    r = _output_weights(layer, x)
    layer.backward(r)
    analytic = [np.copy(layer.dL_dW), np.copy(layer.dL_db)]

    def loss(_nudged_parameter: np.ndarray) -> float:
        return float(np.sum(layer.forward(x) * r))

    numeric = [numerical_gradient(loss, layer._w), numerical_gradient(loss, layer._b)]
    layer.forward(x)
    return _report(list(zip(analytic, numeric)), atol, rtol)


def gradient_check_loss(loss: Any, pred: np.ndarray, target: np.ndarray, atol: float = ATOL,
                        rtol: float = RTOL) -> bool:
    """Checks ``loss.backward``'s dL/dpred at (`pred`, `target`); prints the max
    relative and absolute errors and returns whether every entry is within tolerance."""
    pred = np.array(pred, np.float64)
    loss.forward(pred, target)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda p: loss.forward(p, target), pred)
    return _report([(analytic, numeric)], atol, rtol)
