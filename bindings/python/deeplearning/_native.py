"""What standalone layers and losses share: owning a library handle, and the
dtype they compute in."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

from numpy.typing import DTypeLike

_Object = TypeVar("_Object", bound="NativeObject")

import numpy as np

from ._lib import DTYPE_CODES


def dtype_of(dtype: DTypeLike) -> np.dtype[Any]:
    """`dtype` as np.float32 or np.float64, the two element types the library computes in."""
    resolved: np.dtype[Any] = np.dtype(dtype)
    if resolved not in DTYPE_CODES:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {resolved}")
    return resolved


def _numpy_value(value: Any) -> Any:
    """What json cannot write by itself: NumPy scalars (np.int64(784)) and arrays of
    numbers, as the Python numbers and lists they hold."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"a spec value of type {type(value).__name__} is not JSON ({value!r})")


def spec_text(spec: Mapping[str, Any]) -> bytes:
    """A spec (a model's, a layer's, a loss's) as the JSON text the library parses.
    NumPy scalars and arrays become numbers and lists; NaN and infinities are refused
    (ValueError), as JSON has none."""
    return json.dumps(spec, allow_nan=False, default=_numpy_value).encode("utf-8")


def rows_cols(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the library's 2-D view of an array: its last axis holds the
    features of one sample, the axes before it count the samples; a 0-d array is
    one sample of one value."""
    if not shape:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


class Handle:
    """A library object, freed when the last reference to this goes.

    Parameter views (see ``_lib.memory_view``) hold one, so the memory they show
    lives as long as they do, even after the Python object that made them was
    closed.
    """

    __slots__ = ("pointer", "_free", "_keep")

    def __init__(self, pointer: Any, free: Callable[[Any], None], keep: object = None):
        self.pointer = pointer
        self._free = free
        self._keep = keep      # memory the library object reads in place (a borrowed array)

    def __del__(self) -> None:
        try:
            self._free(self.pointer)
        except Exception:  # interpreter shutdown may have torn down the library already
            pass


class NativeObject:
    """Base of layers and losses: a :class:`Handle`, released by :meth:`close`.

    ``close()`` (also run by ``with`` blocks and garbage collection) drops the
    object's reference to the library's memory; it is freed at once unless a
    NumPy view of a parameter or gradient is still alive, in which case it is
    freed with the last such view. Using a closed object raises ValueError.
    """

    _handle: Handle | None = None  # so that close() and __del__ work even if __init__ failed

    def __init__(self, dtype: DTypeLike):
        self.dtype = dtype_of(dtype)

    def _check_open(self) -> None:
        if self._handle is None:
            raise ValueError(f"operation on a closed {type(self).__name__}")

    @property
    def _h(self) -> Any:
        """The live handle, for passing to the library."""
        if self._handle is None:
            raise ValueError(f"operation on a closed {type(self).__name__}")
        return self._handle.pointer

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Releases the library's object (see the class docs). Safe to call more than once."""
        self._handle = None

    def __enter__(self: _Object) -> _Object:
        self._check_open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"a {type(self).__name__} holds library memory and cannot be "
                        "copied or pickled")
