// MPI for data-parallel training (Sources/DeepLearning/Model/Distributed.swift does no
// communication; the `dl` command and libdeeplearning's dl_mpi_* functions reach MPI
// through these few functions).
//
// Optional at build time: MPI is used when <mpi.h> is on the include path (SwiftPM: the
// pkg-config package ompi-c; CMake: find_package(MPI)) and DL_WITHOUT_MPI is not defined.
// Otherwise every function below is a stub that reports MPI as missing, and nothing is
// linked, so the library builds and works without MPI. The module map names no library:
// pkg-config (SwiftPM) or MPI::MPI_C (CMake) adds -lmpi only when MPI was found.
//
// Swift cannot use MPI's handle macros (MPI_COMM_WORLD, MPI_FLOAT are addresses of
// library globals in Open MPI, integers in MPICH), hence functions.
#ifndef DL_CMPI_SHIM_H
#define DL_CMPI_SHIM_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#if !defined(DL_WITHOUT_MPI) && defined(__has_include)
#if __has_include(<mpi.h>)
#define DLMPI_HAVE_MPI 1
#endif
#endif

#ifdef DLMPI_HAVE_MPI
#include <mpi.h>

static inline int dlmpi_available(void) { return 1; }

/// Whether MPI_Init has run and MPI_Finalize has not.
static inline int dlmpi_active(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

/// Initialises MPI (once; a no-op when already initialised, by mpi4py say) with
/// MPI_THREAD_SERIALIZED: a model may train on any thread, one call at a time. Returns 0
/// or an MPI error code; rank and size are MPI_COMM_WORLD's.
static inline int dlmpi_init(int *rank, int *size) {
    int initialized = 0, finalized = 0, provided = 0, rc;
    MPI_Finalized(&finalized);
    if (finalized) return -1;
    MPI_Initialized(&initialized);
    if (!initialized) {
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) return rc;
        // Errors come back as codes, so the library can report them instead of MPI
        // ending the process.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    rc = MPI_Comm_rank(MPI_COMM_WORLD, rank);
    if (rc != MPI_SUCCESS) return rc;
    return MPI_Comm_size(MPI_COMM_WORLD, size);
}

/// Sums `count` floats (or doubles) at `buffer` over every rank of `*comm` (MPI_COMM_WORLD
/// when comm is NULL), in place. MPI counts are int: larger buffers go in pieces.
static inline int dlmpi_allreduce_sum(void *buffer, size_t count, int is_double, const void *comm) {
    if (!dlmpi_active()) return -1;
    MPI_Comm c = comm ? *(const MPI_Comm *)comm : MPI_COMM_WORLD;
    MPI_Datatype type = is_double ? MPI_DOUBLE : MPI_FLOAT;
    size_t element = is_double ? sizeof(double) : sizeof(float);
    char *p = (char *)buffer;
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int rc = MPI_Allreduce(MPI_IN_PLACE, p, n, type, MPI_SUM, c);
        if (rc != MPI_SUCCESS) return rc;
        p += (size_t)n * element;
        count -= (size_t)n;
    }
    return 0;
}

/// MPI's text for an error code, in buffer (at least MPI_MAX_ERROR_STRING bytes is ample;
/// shorter is cut).
static inline void dlmpi_error_string(int code, char *buffer, int length) {
    if (length <= 0) return;
    buffer[0] = 0;
    if (code == -1) {
        snprintf(buffer, (size_t)length, "MPI is not initialised (or already finalised)");
        return;
    }
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) n = 0;
    text[n < MPI_MAX_ERROR_STRING ? n : MPI_MAX_ERROR_STRING - 1] = 0;
    snprintf(buffer, (size_t)length, "%s", n > 0 ? text : "unknown MPI error");
}

/// Ends every rank of MPI_COMM_WORLD (does not return when MPI is running).
static inline void dlmpi_abort(int code) {
    if (dlmpi_active()) MPI_Abort(MPI_COMM_WORLD, code);
}

static inline int dlmpi_finalize(void) {
    return dlmpi_active() ? MPI_Finalize() : 0;
}

#else  // built without MPI: stubs, nothing linked

static inline int dlmpi_available(void) { return 0; }
static inline int dlmpi_active(void) { return 0; }
static inline int dlmpi_init(int *rank, int *size) { (void)rank; (void)size; return -1; }
static inline int dlmpi_allreduce_sum(void *buffer, size_t count, int is_double, const void *comm) {
    (void)buffer; (void)count; (void)is_double; (void)comm;
    return -1;
}
static inline void dlmpi_error_string(int code, char *buffer, int length) {
    (void)code;
    if (length > 0) snprintf(buffer, (size_t)length, "this build has no MPI (it was built without mpi.h)");
}
static inline void dlmpi_abort(int code) { (void)code; }
static inline int dlmpi_finalize(void) { return 0; }

#endif

#endif
