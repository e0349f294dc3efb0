/*
 * deeplearning_mpi.h -- MPI for data-parallel training with libdeeplearning.
 *
 * libdeeplearning needs no MPI: it hands each training step's packed buffer
 * to a reduction callback (dl_model_set_gradient_reducer() in deeplearning.h).
 * This small separate library, libdeeplearning_mpi, built only when the build
 * finds MPI, provides that callback on MPI_Allreduce, and the few MPI calls a
 * program around it needs. Link it besides libdeeplearning and the MPI your
 * cluster runs (the one it was built with). docs/distributed.md has the rest.
 *
 *     int rank, size;
 *     if (dl_mpi_init(&rank, &size) != DL_OK) { ... }
 *     dl_model_set_gradient_reducer(m, rank, size, dl_mpi_reduce, NULL);
 *     for (int e = 0; e < epochs; e++) dl_train_epoch(m, train, 64, 1, &loss);
 *     if (rank == 0) dl_model_save(m, "model.h5");
 *     dl_mpi_finalize();
 *
 * Functions return DL_OK or a DL_* status of deeplearning.h (DL_IO_ERROR for
 * an MPI failure); dl_mpi_last_error() gives the message.
 */
#ifndef DEEPLEARNING_MPI_H
#define DEEPLEARNING_MPI_H

#include <stddef.h>

#include "deeplearning.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * dl_mpi_init - initialises MPI unless it already is (by mpi4py, or the
 * program itself), asking for MPI_THREAD_SERIALIZED, and gives this process's
 * rank and the number of processes in MPI_COMM_WORLD.
 *   rank, world_size  OUT, may be NULL.
 * Returns: DL_OK; DL_IO_ERROR (MPI failed, or was finalised already).
 */
DL_API int dl_mpi_init(int *rank, int *world_size);

/*
 * dl_mpi_reduce - a dl_reduce_fn: MPI_Allreduce(MPI_IN_PLACE, buffer, count,
 * MPI_FLOAT or MPI_DOUBLE, MPI_SUM) on the communicator user_data points to
 * (an MPI_Comm *), or MPI_COMM_WORLD when user_data is NULL. Buffers above
 * INT_MAX elements go in pieces.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL buffer, bad dtype); DL_IO_ERROR
 * (MPI is not running, or MPI_Allreduce failed).
 */
DL_API int dl_mpi_reduce(void *user_data, void *buffer, size_t count, int dtype);

/*
 * dl_mpi_abort - writes "dl: rank R: message" to stderr and ends every process
 * of MPI_COMM_WORLD with exit code `code` (MPI_Abort), so that no rank is left
 * waiting for one that failed. Returns only when MPI is not running
 * (DL_IO_ERROR); message may be NULL.
 */
DL_API int dl_mpi_abort(int code, const char *message);

/*
 * dl_mpi_finalize - MPI_Finalize, when MPI is running (else nothing).
 * Returns: DL_OK or DL_IO_ERROR.
 */
DL_API int dl_mpi_finalize(void);

/*
 * dl_mpi_last_error - the message of this thread's last failed dl_mpi_* call
 * ("" after a success). Valid until the thread's next dl_mpi_* call.
 */
DL_API const char *dl_mpi_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* DEEPLEARNING_MPI_H */
