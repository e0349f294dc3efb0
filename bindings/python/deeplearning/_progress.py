"""Progress of an epoch: a live bar on a terminal, one plain line per epoch elsewhere."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TextIO


def format_seconds(seconds: float) -> str:
    """12.3s, 4m05s or 2h07m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_number(value: float) -> str:
    """A logged value readable at any magnitude: 0.0123 -> "0.0123", 1.5 -> "1.5000",
    2.5e+37 -> "2.500e+37", 3e-07 -> "3.000e-07"; NaN and infinities by name."""
    if not math.isfinite(value):
        return str(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.3e}"


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressBar:
    """``label  done/total [=====>....] name value ... rate ETA 3.2s`` on `stream`.

    When `live` (by default: when `stream` is a terminal), :meth:`update` redraws
    the line in place with a carriage return, at most once per `interval` seconds
    so a fast loop costs almost nothing; otherwise it draws nothing, so a log file
    gets one line per epoch. :meth:`finish` writes the final state with the
    elapsed time and ends the line; :meth:`close` only ends a line left open
    (after an exception). With `stream` None every method does nothing.
    """

    def __init__(self, label: str, total: int, stream: TextIO | None, width: int = 24,
                 interval: float = 0.1, clock: Callable[[], float] = time.monotonic,
                 live: bool | None = None, unit: str = "batch"):
        self.label, self.total, self.stream = label, total, stream
        self.width, self.interval, self.clock, self.unit = width, interval, clock, unit
        self.live = is_terminal(stream) if live is None else live
        self.start = clock()
        self._last_draw = -math.inf
        self._length = 0  # of the line on screen, to blank out leftovers
        self._open = False

    def update(self, done: int, **fields: float | None) -> None:
        if self.stream is None or not self.live:
            return
        now = self.clock()
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else math.nan
        rate = f"{done / elapsed:.0f} {self.unit}/s " if elapsed > 0 and done else ""
        self._draw(done, fields, rate + "ETA " + ("?" if math.isnan(eta) else format_seconds(eta)))

    def finish(self, **fields: float | None) -> None:
        if self.stream is None:
            return
        self._draw(self.total, fields, format_seconds(self.clock() - self.start))
        self.close()

    def close(self) -> None:
        if self._open and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

    def _draw(self, done: int, fields: dict[str, float | None], tail: str) -> None:
        assert self.stream is not None
        filled = self.width * done // self.total if self.total else self.width
        bar = "=" * filled + (">" + "." * (self.width - filled - 1) if filled < self.width else "")
        values = " ".join(f"{name} {format_number(value)}" for name, value in fields.items() if value is not None)
        digits = len(str(self.total))
        line = f"{self.label} {done:>{digits}}/{self.total} [{bar}] {values} {tail}"
        if self.live:
            self.stream.write("\r" + line.ljust(self._length))
            self._length = len(line)
        else:
            self.stream.write(line)
        self.stream.flush()
        self._open = True
