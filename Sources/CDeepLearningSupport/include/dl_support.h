// Internal support for the C ABI: the per-thread message of the last failure.
// C11 `_Thread_local` is the simplest portable way to keep one buffer per thread;
// Swift has no thread-local storage of its own. Hidden: not part of the library's API.
#ifndef DL_SUPPORT_H
#define DL_SUPPORT_H

#define DLX_HIDDEN __attribute__((visibility("hidden")))

/// Copies `message` (truncated to the buffer) into this thread's last-error buffer.
DLX_HIDDEN void dlx_set_error(const char *message);

/// Empties this thread's last-error buffer (every call that succeeds: cheaper than
/// dlx_set_error(""), which Swift calls through a temporary C string).
DLX_HIDDEN void dlx_clear_error(void);

/// This thread's last-error message; "" when the last call succeeded.
DLX_HIDDEN const char *dlx_last_error(void);

/// This thread's accuracy of the last train step or progress report (dl_last_accuracy).
DLX_HIDDEN void dlx_set_accuracy(double accuracy);
DLX_HIDDEN double dlx_accuracy(void);

#endif
