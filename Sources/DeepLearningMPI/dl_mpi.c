// libdeeplearning_mpi: the ready MPI reducer for data-parallel training
// (Include/deeplearning_mpi.h). Built by CMake only when find_package(MPI) succeeds; the
// MPI calls themselves are the CMPI shim's, shared with the dl command.
#include <stdarg.h>
#include <stdio.h>

#include "deeplearning_mpi.h"
#include "shim.h"

#ifndef DLMPI_HAVE_MPI
#error "libdeeplearning_mpi is built only with MPI (mpi.h not found, or DL_WITHOUT_MPI defined)"
#endif

static _Thread_local char last_error[1024];

static int fail(int status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(last_error, sizeof last_error, format, args);
    va_end(args);
    return status;
}

static int ok(void) {
    last_error[0] = 0;
    return DL_OK;
}

static const char *mpi_text(int code, char *buffer, int length) {
    dlmpi_error_string(code, buffer, length);
    return buffer;
}

int dl_mpi_init(int *rank, int *world_size) {
    int r = 0, n = 0;
    char text[512];
    int rc = dlmpi_init(&r, &n);
    if (rc != 0) return fail(DL_IO_ERROR, "MPI could not be initialised: %s", mpi_text(rc, text, sizeof text));
    if (rank) *rank = r;
    if (world_size) *world_size = n;
    return ok();
}

int dl_mpi_reduce(void *user_data, void *buffer, size_t count, int dtype) {
    char text[512];
    if (!buffer) return fail(DL_INVALID_ARGUMENT, "buffer is NULL");
    if (dtype != DL_FLOAT32 && dtype != DL_FLOAT64) {
        return fail(DL_INVALID_ARGUMENT, "dtype must be DL_FLOAT32 or DL_FLOAT64, got %d", dtype);
    }
    int rc = dlmpi_allreduce_sum(buffer, count, dtype == DL_FLOAT64, user_data);
    if (rc != 0) return fail(DL_IO_ERROR, "MPI_Allreduce failed: %s", mpi_text(rc, text, sizeof text));
    return ok();
}

int dl_mpi_abort(int code, const char *message) {
    if (!dlmpi_active()) return fail(DL_IO_ERROR, "MPI is not running (dl_mpi_init was not called, or MPI was finalised)");
    int rank = -1, size = 0;
    dlmpi_init(&rank, &size);       // already initialised: only reads the rank
    fprintf(stderr, "dl: rank %d: %s\n", rank, message ? message : "aborting");
    fflush(stderr);
    dlmpi_abort(code);
    return fail(DL_IO_ERROR, "MPI_Abort returned");
}

int dl_mpi_finalize(void) {
    char text[512];
    int rc = dlmpi_finalize();
    if (rc != 0) return fail(DL_IO_ERROR, "MPI_Finalize failed: %s", mpi_text(rc, text, sizeof text));
    return ok();
}

const char *dl_mpi_last_error(void) { return last_error; }
