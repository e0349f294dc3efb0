/*
 * test_mpi_stubs.c -- the CMPI shim (Sources/CMPI/shim.h) as a build without MPI compiles
 * it (DL_WITHOUT_MPI, as CMake sets when find_package(MPI) fails, or no mpi.h): every
 * function a stub that reports MPI as missing, nothing to link. The dl command built this
 * way says "built without MPI" under mpirun and trains in one process otherwise.
 */
#define DL_WITHOUT_MPI 1
#include "shim.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    int failures = 0, rank = 7, size = 7;
    float buffer[3] = {1, 2, 3};
    char text[256];
#define EXPECT(cond) do { if (!(cond)) { fprintf(stderr, "FAILED: %s\n", #cond); failures++; } } while (0)
    EXPECT(dlmpi_available() == 0);
    EXPECT(dlmpi_active() == 0);
    EXPECT(dlmpi_init(&rank, &size) != 0 && rank == 7 && size == 7);
    EXPECT(dlmpi_allreduce_sum(buffer, 3, 0, NULL) != 0 && buffer[1] == 2);
    dlmpi_error_string(-1, text, sizeof text);
    EXPECT(strstr(text, "without mpi.h") != NULL);
    dlmpi_abort(1);                     /* returns: nothing to abort */
    EXPECT(dlmpi_finalize() == 0);
    printf("%s\n", failures ? "FAILED" : "MPI stubs ok");
    return failures != 0;
}
