"""Long library calls that report progress and stop on Ctrl-C.

dl_train_epoch and dl_evaluate_dataset run for seconds or minutes inside the
library, where Python cannot raise KeyboardInterrupt. :func:`long_call` gives
the model a progress callback (dl_model_set_progress) for the length of the
call. While it runs, SIGINT only sets a flag (Python runs signal handlers
between bytecodes, so the handler runs inside the callback, after the step the
library was busy with); the callback sees the flag and asks the library to
stop, and the call returns DL_CANCELLED after that finished step. The model is
then as after its last step (see dl_progress_fn in the header), and
KeyboardInterrupt is raised here.

An exception raised by `on_progress` (a Keras-style callback stopping the run,
say) stops the call the same way and is re-raised as it was.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ._lib import PROGRESS_FN, call, last_accuracy, lib


_NO_PROGRESS = PROGRESS_FN()  # NULL: no callback


class Progress(NamedTuple):
    """Where a long call stands: steps (or evaluation chunks) done of `total`, samples
    done, the mean loss of those samples and, for a classifier, the fraction of them
    classified right (in training, by each step's forward pass before its update, as
    Keras counts; None for regression)."""

    done: int
    total: int
    samples: int
    mean_loss: float
    accuracy: float | None = None


class _Watch:
    """The callback's state: a SIGINT seen, or an exception from `on_progress`."""

    def __init__(self, on_progress: Callable[[Progress], object] | None):
        self.on_progress = on_progress
        self.interrupted = False
        self.error: BaseException | None = None

    def on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def __call__(self, user_data: Any, done: int, total: int, samples: int, mean_loss: float) -> int:
        # Nothing may escape a ctypes callback (ctypes would print and ignore it).
        try:
            if not self.interrupted and self.on_progress is not None:
                self.on_progress(Progress(done, total, samples, mean_loss, last_accuracy()))
        except BaseException as error:  # noqa: B902 (re-raised by long_call)
            self.error = error
        return 1 if self.interrupted or self.error is not None else 0


def long_call(handle: Any, function: Any, *args: Any,
              on_progress: Callable[[Progress], object] | None = None) -> Any:
    """``call(function, handle, *args)`` with `handle`'s progress callback set for its
    length: `on_progress` gets a :class:`Progress` after every step, and Ctrl-C stops
    the call after the step under way and raises KeyboardInterrupt."""
    watch = _Watch(on_progress)
    callback = PROGRESS_FN(watch)  # kept alive here for the whole call
    # Only the main thread receives signals; and a program's own SIGINT handler is left
    # alone (it then runs inside the callback, which stops the call if it raises).
    swap = (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    previous = signal.signal(signal.SIGINT, watch.on_sigint) if swap else None
    try:
        call(lib.dl_model_set_progress, handle, callback, None)
        try:
            result = call(function, handle, *args)
        finally:
            lib.dl_model_set_progress(handle, _NO_PROGRESS, None)
    except BaseException:
        if watch.error is not None:
            raise watch.error from None
        if watch.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if swap:
            signal.signal(signal.SIGINT, previous)
    if watch.interrupted:  # pressed during the last step: the call finished, the user still asked to stop
        raise KeyboardInterrupt
    return result
