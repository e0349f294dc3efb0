// Reading untrusted HDF5 files in a child process (isolated.c).
//
// libhdf5 1.10 follows a file's internal pointers without checking them: a crafted
// file can make it read wild memory (a variable-length string pointing into a damaged
// global heap segfaults in H5HG_read) or loop forever (H5HG__protect). Nothing in front
// of HDF5 can validate every structure it follows, so the library never opens an
// untrusted file in its own process. `dlh5i_read` forks a child that opens the file,
// reads the objects asked for and writes them to a pipe in a simple stream (below); the
// parent only reads that pipe, with a deadline, and kills the child when the deadline
// passes. A crash or a hang of HDF5 is then a failed load, not a dead or stuck process.
//
// The child runs only C: libhdf5, malloc and write(2), and ends with _exit. It is forked
// while the caller holds the process-wide HDF5 lock (dlh5i_lock), so HDF5's state in the
// child is consistent; the lock is released as soon as fork() returns, so other threads'
// saves and loads go on while the child works. Hidden: not part of the library's API.
#ifndef DL_HDF5_ISOLATED_H
#define DL_HDF5_ISOLATED_H

#include <stddef.h>
#include <stdint.h>

#define DLH5I_HIDDEN __attribute__((visibility("hidden")))

/// The process-wide lock around every libhdf5 call (Debian's libhdf5 is not thread-safe).
/// Recursive. Swift's HDF5File.locked takes it too.
DLH5I_HIDDEN void dlh5i_lock(void);
DLH5I_HIDDEN void dlh5i_unlock(void);

// Every OpenBLAS call of the library runs between dlh5i_blas_enter and dlh5i_blas_leave
// (shared), and the reader's fork() waits until none runs (exclusive). OpenBLAS's
// pthread_atfork handler shuts its thread pool down before every fork; a BLAS call running
// on another thread at that moment waits forever for the workers it lost. Writers are
// preferred, so a stream of training steps cannot keep a load waiting.
DLH5I_HIDDEN void dlh5i_blas_enter(void);
DLH5I_HIDDEN void dlh5i_blas_leave(void);

/// Outcomes of dlh5i_read.
enum {
    DLH5I_OK = 0,
    DLH5I_TIMEOUT = 1,   // the child did not finish before the deadline; it was killed
    DLH5I_CRASHED = 2,   // the child died (a signal, or a nonzero exit) before finishing its stream
    DLH5I_TOO_LARGE = 3, // the stream exceeded max_bytes; the child was killed
    DLH5I_NOMEM = 4,     // the parent could not allocate the stream's buffer
    DLH5I_SYSTEM = 5,    // pipe() or fork() failed (errno in the message)
};

/// The deadline of one load: `base_ms` plus one millisecond per 8 KiB of the file (so a
/// large data set is read at 8 MB/s or faster). `base_ms` is 10000 (10 s) unless
/// dlh5i_set_timeout_ms or the environment variable DL_HDF5_TIMEOUT_MS (read at each load)
/// sets it; values below 1 or above 3600000 (one hour) are ignored.
DLH5I_HIDDEN int64_t dlh5i_deadline_ms(int64_t file_size);
/// Sets the base of the deadline for later loads (0 restores the default). Process-wide.
DLH5I_HIDDEN void dlh5i_set_timeout_ms(int64_t ms);

/// Reads objects of the HDF5 file at `path` in a child process.
///
/// `roots` lists `nroots` object names ("/", "x", "y"); a group is written with its
/// member names and attributes, and with `recursive` its members too, to depth 8; a
/// dataset with its type, shape and values. Missing roots are left out of the stream.
/// `file_size` bounds what a dataset may claim (see isolated.c). On DLH5I_OK, `*out`
/// (malloc'd, freed by the caller) holds `*out_len` bytes of stream. Otherwise `message`
/// (of `message_len` bytes) says why.
DLH5I_HIDDEN int dlh5i_read(const char *path, const char *const *roots, int nroots, int recursive,
                            int64_t file_size, size_t max_bytes,
                            unsigned char **out, size_t *out_len, char *message, size_t message_len);

// The stream (native byte order: the reader is the writer's parent, on the same machine):
//   "DLH5I1"                                 header
//   then records, each starting with one tag byte:
//   'G' str path, u32 n, n x str name        a group and its members
//   'A' str object, str name, u8 kind, u64 points, value
//                                            an attribute; kind 'i' (value i64), 'f' (f64),
//                                            's' (str) when points == 1; 'o' (no value) else
//   'D' str path, u8 class, u32 type_size, u8 is_signed, u32 rank, rank x u64 dims,
//       u8 payload, u64 bytes, bytes         a dataset; class 'i' integer, 'f' float,
//                                            's' string, 'o' other; payload 'b' u8, 'l' i64,
//                                            'q' u64, 'f' f32, 'd' f64, 's' characters, 0 none
//   'E' str message                          the child's failure (cannot open, ...)
//   'Z'                                      the end; a stream without it is refused
//   str = u32 length, bytes (no NUL)

#endif
