"""The package's exceptions and the library's status codes.

Every failure the library reports is a :class:`DLError` carrying the status,
raised as the subclass for that status, which also derives from the built-in
exception Python code catches for that kind of mistake:

    ==================  =====================  ==========================
    status              raised as              also an instance of
    ==================  =====================  ==========================
    DL_ERROR            InternalError          RuntimeError
    DL_INVALID_ARGUMENT InvalidArgumentError   ValueError
    DL_SPEC_ERROR       SpecError              ValueError
    DL_IO_ERROR         FileError              OSError
    DL_FORMAT_ERROR     FormatError            ValueError
    DL_NOMEM            OutOfMemoryError       MemoryError
    DL_NUMERIC          NumericError           ValueError, ArithmeticError
    DL_UNSUPPORTED      UnsupportedError       ValueError
    DL_BUSY             BusyError              RuntimeError
    DL_CANCELLED        CancelledError         RuntimeError
    ==================  =====================  ==========================

An integer that the C type of its argument cannot hold (a size_t of -1 or
2**64, an int of 10**20) is refused before the library is called, as
:class:`IntegerRangeError`: an InvalidArgumentError (so also a ValueError)
and an OverflowError, as Python's own conversions raise. ctypes alone would
pass such a value on silently wrapped.

So ``except ValueError`` catches a bad label or spec, ``except OSError`` a
missing file, and ``except dl.DLError`` any library failure.
"""

from __future__ import annotations

import enum
from typing import Any


class Status(enum.IntEnum):
    """The DL_* status codes of deeplearning.h (stable numbers)."""

    OK = 0
    ERROR = 1
    INVALID_ARGUMENT = 2
    SPEC_ERROR = 3
    IO_ERROR = 4
    FORMAT_ERROR = 5
    NOMEM = 6
    NUMERIC = 7
    UNSUPPORTED = 8
    BUSY = 9
    CANCELLED = 10


class DLError(Exception):
    """A library call failed.

    ``message`` is the library's detailed text (``dl_last_error()``), ``status``
    the code (a :class:`Status` when the code is known, else the plain int) and
    ``status_name`` the header's constant name, such as ``"DL_SPEC_ERROR"``.
    Raised as the subclass for its status (see the module docs). Mistakes the
    binding can see for itself (a wrong shape or dtype) are raised as plain
    ValueError or TypeError before the library is called.
    """

    def __init__(self, message: str, status: int):
        # One argument for the base class: OSError would read two as (errno, strerror).
        super().__init__(message)
        self.status: int
        try:
            self.status = Status(status)
            self.status_name = f"DL_{Status(status).name}"
        except ValueError:
            self.status = status
            self.status_name = f"unknown status {status}"
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]"

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message, int(self.status))


class InternalError(DLError, RuntimeError):
    """DL_ERROR: a bug in the library."""


class InvalidArgumentError(DLError, ValueError):
    """DL_INVALID_ARGUMENT: a bad size, index, label or handle."""


class IntegerRangeError(InvalidArgumentError, OverflowError):
    """An integer argument outside what its C type holds, refused before the call
    (status DL_INVALID_ARGUMENT, as the library gives for sizes beyond its limits)."""

    def __init__(self, message: str, status: int = Status.INVALID_ARGUMENT):
        super().__init__(message, status)


class SpecError(DLError, ValueError):
    """DL_SPEC_ERROR: the spec is malformed or describes an impossible model."""


class FileError(DLError, OSError):
    """DL_IO_ERROR: a file could not be opened, read or written."""


class FormatError(DLError, ValueError):
    """DL_FORMAT_ERROR: a file is damaged, of the wrong kind, or does not match the model."""


class OutOfMemoryError(DLError, MemoryError):
    """DL_NOMEM: out of memory, or a size beyond the library's limits."""


class NumericError(DLError, ValueError, ArithmeticError):
    """DL_NUMERIC: NaN or infinity in inputs, targets or the loss."""


class UnsupportedError(DLError, ValueError):
    """DL_UNSUPPORTED: not possible for this model (class labels for an MSE loss)."""


class BusyError(DLError, RuntimeError):
    """DL_BUSY: the model is in use by another thread."""


class CancelledError(DLError, RuntimeError):
    """DL_CANCELLED: a progress callback stopped the call."""


_BY_STATUS: dict[int, type[DLError]] = {
    Status.ERROR: InternalError, Status.INVALID_ARGUMENT: InvalidArgumentError,
    Status.SPEC_ERROR: SpecError, Status.IO_ERROR: FileError, Status.FORMAT_ERROR: FormatError,
    Status.NOMEM: OutOfMemoryError, Status.NUMERIC: NumericError, Status.UNSUPPORTED: UnsupportedError,
    Status.BUSY: BusyError, Status.CANCELLED: CancelledError}


def error_for(message: str, status: int) -> DLError:
    """The exception for a failed call: the subclass for `status` (DLError for an unknown one)."""
    return _BY_STATUS.get(status, DLError)(message, status)
