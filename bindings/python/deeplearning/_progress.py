"""A one-line progress bar, redrawn in place with a carriage return."""

from __future__ import annotations

import math
import time


def format_seconds(seconds: float) -> str:
    """12.3s, 4m05s or 2h07m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


class ProgressBar:
    """``label  done/total [=====>....] name value ... ETA 3.2s`` on `stream`.

    :meth:`update` redraws at most once per `interval` seconds, so a fast loop
    costs almost nothing; :meth:`finish` draws the final state with the elapsed
    time and ends the line; :meth:`close` only ends a line left open (after an
    exception). With `stream` None every method does nothing.
    """

    def __init__(self, label: str, total: int, stream, width: int = 24,
                 interval: float = 0.1, clock=time.monotonic):
        self.label, self.total, self.stream = label, total, stream
        self.width, self.interval, self.clock = width, interval, clock
        self.start = clock()
        self._last_draw = -math.inf
        self._length = 0  # of the line on screen, to blank out leftovers
        self._open = False

    def update(self, done: int, **fields) -> None:
        if self.stream is None:
            return
        now = self.clock()
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else math.nan
        self._draw(done, fields, "ETA " + ("?" if math.isnan(eta) else format_seconds(eta)))

    def finish(self, **fields) -> None:
        if self.stream is None:
            return
        self._draw(self.total, fields, format_seconds(self.clock() - self.start))
        self.close()

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False

    def _draw(self, done: int, fields: dict, tail: str) -> None:
        filled = self.width * done // self.total if self.total else self.width
        bar = "=" * filled + (">" + "." * (self.width - filled - 1) if filled < self.width else "")
        values = " ".join(f"{name} {value:.4f}" for name, value in fields.items() if value is not None)
        digits = len(str(self.total))
        line = f"{self.label} {done:>{digits}}/{self.total} [{bar}] {values} {tail}"
        self.stream.write("\r" + line.ljust(self._length))
        self.stream.flush()
        self._length = len(line)
        self._open = True
