"""Checks and converts the NumPy arrays the models take, before any reaches C.

Every array handed to the library comes out of here C-contiguous, aligned and of
the dtype its C parameter has, with a shape computed from the array itself, so
the lengths passed along with it are always the real ones.

The rules:

- Inputs ``x``: any real numeric dtype (bool, integer, float), converted to
  float32; no copy when already float32 and C-contiguous. Shape (N, input_size),
  or (N, ...) with input_size values per sample, e.g. (N, 28, 28) for 784
  inputs, flattened per sample. A single sample needs its batch axis: ``x[None]``.
- ``y`` is read by its dtype. Integers are class labels, shape (N,), converted
  to int32. Floats are targets, shape (N, output_size), or (N,) when the model
  has one output, converted to float32. Float arrays are never taken as labels,
  even when their values are whole numbers: a 1-D float ``y`` for a model with
  several outputs is refused with TypeError, as are bool arrays; both are
  ambiguous, and ``y.astype(np.int32)`` says what is meant.
- Standalone layers and losses (``deeplearning.layers``) take data of any shape
  and any real dtype through :func:`values`, converted to the dtype the layer
  computes in (float64 unless float32 was asked for), as NumPy would promote it.
- Objects, strings and complex numbers are refused with TypeError; wrong shapes
  with ValueError naming the expected and the actual shape.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

_FLOAT32 = np.dtype(np.float32)
_INT32 = np.dtype(np.int32)
# Integer dtypes every value of which is a valid int32: labels of these need no range check.
_FITS_INT32 = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.uint8, np.uint16))


def _numeric(value: ArrayLike, name: str, kinds: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in kinds:
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    return array


def _c_array(array: np.ndarray, dtype: DTypeLike) -> np.ndarray:
    """`array` itself when already C-contiguous, aligned and of `dtype`, else a converted copy."""
    layout = array.flags
    if array.dtype == dtype and layout.c_contiguous and layout.aligned:
        return array
    return np.array(array, dtype, order="C")  # a new array is always contiguous and aligned


def inputs(x: ArrayLike, size: int, name: str = "x", allow_empty: bool = False) -> np.ndarray:
    """`x` as a C-contiguous float32 array of shape (N, size)."""
    array = _numeric(x, name, "biuf")
    shape = array.shape
    if len(shape) < 2 or math.prod(shape[1:]) != size:
        raise ValueError(f"{name} must have shape (N, {size}) or (N, ...) with {size} values "
                         f"per sample, got shape {shape}")
    count = shape[0]
    if count == 0 and not allow_empty:
        raise ValueError(f"{name} holds no samples (shape {shape})")
    if len(shape) > 2:
        array = array.reshape(count, size)
    return _c_array(array, _FLOAT32)


def values(x: ArrayLike, dtype: DTypeLike, name: str = "x") -> np.ndarray:
    """`x`, of any shape with at least one value, as a C-contiguous array of `dtype`."""
    array = _numeric(x, name, "biuf")
    if array.size == 0:
        raise ValueError(f"{name} holds no values (shape {array.shape})")
    return _c_array(array, dtype)


def labels(y: ArrayLike, count: int, name: str = "y") -> np.ndarray:
    """Integer class labels `y` as a C-contiguous int32 array of shape (count,).

    Whether each label is one of the model's classes is the library's check; here
    only that converting to int32 loses nothing.
    """
    array = np.asarray(y)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name}: class labels must be integers, got dtype {array.dtype}")
    if array.shape != (count,):
        raise ValueError(f"{name}: expected {count} labels, shape ({count},), got shape {array.shape}")
    if array.dtype in _FITS_INT32:
        return _c_array(array, _INT32)
    converted = array.astype(_INT32, order="C")  # wraps values outside int32 around
    if not (converted == array).all():
        raise ValueError(f"{name}: labels must fit in int32, got values in "
                         f"[{array.min()}, {array.max()}]")
    return converted


def targets(y: ArrayLike, count: int, size: int, name: str = "y") -> np.ndarray:
    """Float targets `y` as a C-contiguous float32 array of shape (count, size)."""
    array = _numeric(y, name, "f")
    if size == 1 and array.shape == (count,):
        array = array.reshape(count, 1)
    if array.shape != (count, size):
        raise ValueError(f"{name}: float targets must have shape ({count}, {size}), got shape "
                         f"{array.shape}; for class labels pass an integer array")
    return _c_array(array, _FLOAT32)


def supervision(y: ArrayLike, count: int, output_size: int,
                name: str = "y") -> tuple[np.ndarray | None, np.ndarray | None]:
    """(labels, targets) for `y`, exactly one of them None; the dtype decides which."""
    array = np.asarray(y)
    kind = array.dtype.kind
    if kind in "iu":
        return labels(array, count, name), None
    if kind == "f" and (array.ndim != 1 or output_size == 1):
        return None, targets(array, count, output_size, name)
    hint = "; for class labels use y.astype(np.int32)" if kind in "bf" else ""
    raise TypeError(f"{name} must be integer class labels of shape ({count},) or float targets "
                    f"of shape ({count}, {output_size}), got dtype {array.dtype} and shape {array.shape}{hint}")


def parameter(values: ArrayLike, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Parameter `values` as a C-contiguous float32 array of exactly `shape`."""
    array = _numeric(values, name, "iuf")
    if array.shape != shape:
        raise ValueError(f"{name} has shape {shape}, got values of shape {array.shape}")
    return _c_array(array, _FLOAT32)
