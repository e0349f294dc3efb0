"""What standalone layers and losses share: owning a library handle, and the
dtype they compute in."""

from __future__ import annotations

import json
import math

import numpy as np

from ._lib import DTYPE_CODES


def dtype_of(dtype) -> np.dtype:
    """`dtype` as np.float32 or np.float64, the two element types the library computes in."""
    resolved = np.dtype(dtype)
    if resolved not in DTYPE_CODES:
        raise TypeError(f"dtype must be np.float32 or np.float64, got {resolved}")
    return resolved


def spec_text(spec: dict) -> bytes:
    """A layer or loss object as the JSON text the library parses."""
    return json.dumps(spec, allow_nan=False).encode("utf-8")


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

    __slots__ = ("pointer", "_free")

    def __init__(self, pointer, free):
        self.pointer = pointer
        self._free = free

    def __del__(self):
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

    def __init__(self, dtype):
        self.dtype = dtype_of(dtype)

    def _check_open(self) -> None:
        if self._handle is None:
            raise ValueError(f"operation on a closed {type(self).__name__}")

    @property
    def _h(self):
        """The live handle, for passing to the library."""
        self._check_open()
        return self._handle.pointer

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Releases the library's object (see the class docs). Safe to call more than once."""
        self._handle = None

    def __enter__(self):
        self._check_open()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError(f"a {type(self).__name__} holds library memory and cannot be "
                        "copied or pickled")
