"""The package's exception and the library's status codes."""

from __future__ import annotations

import enum


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


class DLError(RuntimeError):
    """A library call failed.

    ``message`` is the library's detailed text (``dl_last_error()``), ``status``
    the code (a :class:`Status` when the code is known, else the plain int) and
    ``status_name`` the header's constant name, such as ``"DL_SPEC_ERROR"``.
    Mistakes the binding can see for itself (a wrong shape or dtype) are raised
    as ValueError or TypeError before the library is called.
    """

    def __init__(self, message: str, status: int):
        super().__init__(message, status)
        try:
            self.status: int = Status(status)
            self.status_name = f"DL_{self.status.name}"
        except ValueError:
            self.status = status
            self.status_name = f"unknown status {status}"
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.status_name}]"
