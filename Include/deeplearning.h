/*
 * deeplearning.h -- the C interface of the deeplearning library.
 *
 * deeplearning trains and runs neural networks whose architecture is described
 * in a JSON spec file (see specs/README.md). The library is written in Swift and
 * exports exactly the functions declared here; anything not declared in this
 * header is not part of the interface.
 *
 * A typical program:
 *
 *     dl_model *m = NULL;
 *     if (dl_model_from_spec("specs/mnist_mlp.json", &m) != DL_OK) {
 *         fprintf(stderr, "%s\n", dl_last_error());
 *         return 1;
 *     }
 *     double loss;
 *     dl_train_step(m, x, 64, labels, NULL, &loss);     // x: 64 * 784 floats
 *     dl_predict(m, x, 64, out, 64 * 10);               // out: raw outputs (logits)
 *     dl_model_free(m);
 *
 * Conventions
 *   - Every function that can fail returns an int status: DL_OK (0) or one of
 *     the DL_* codes below. dl_status_string() gives fixed text for a code;
 *     dl_last_error() gives the detailed message of the last call on the
 *     calling thread.
 *   - Results come back through parameters marked OUT. On failure, OUT
 *     parameters and the model are left unchanged (except that an epoch of
 *     dl_train_epoch() stopped part way, by DL_NUMERIC or DL_CANCELLED, keeps
 *     the steps it finished).
 *   - Long calls (dl_train_epoch(), dl_evaluate_dataset()) report their
 *     progress to a callback and can be stopped by it: dl_model_set_progress().
 *   - Data is passed as row-major float arrays: `count` samples of
 *     dl_model_input_size() values each. Class labels are int32 indices in
 *     [0, output size). NaN or infinite inputs and targets are refused with
 *     DL_NUMERIC; nothing is changed.
 *   - Sizes, counts and indices (size_t arguments) above 2^31 - 1, the
 *     largest number of elements of one tensor, give DL_INVALID_ARGUMENT
 *     naming the argument, before anything is read or allocated; buffer
 *     capacities (out_len, dims_len, ...) may be anything. An allocation whose
 *     size a caller decides that cannot be had gives DL_NOMEM.
 *   - No function ends the calling process, whatever its arguments. Handles
 *     are checked: NULL, a freed handle or a pointer that is not a live
 *     handle of the right kind (model, layer, loss, data set) gives
 *     DL_INVALID_ARGUMENT (a freed handle is detected as long as its address
 *     has not been reused by a new one).
 *
 * Thread safety
 *   - All functions may be called from any thread. Different models may be
 *     used on different threads at the same time.
 *   - Any number of threads may read one model at the same time: dl_predict,
 *     dl_predict_classes, dl_evaluate, dl_evaluate_dataset, and the functions
 *     that only report values (sizes, counts, shapes, dl_model_get_param,
 *     dl_model_get_buffer, dl_model_get_learning_rate,
 *     dl_model_get_preprocessing, dl_model_step_count). Each inference call
 *     works in memory of its own (taken from a small pool the model keeps, so
 *     repeated calls allocate nothing), and its results are bit for bit those
 *     of the same call made alone.
 *   - Every other function on a model (a train step or epoch, every set_*
 *     function, save, clone, gradcheck, the functions that return names or the
 *     spec as strings) takes the model alone. A call that finds the model
 *     taken the other way waits for it up to 0.25 s, then returns DL_BUSY and
 *     changes nothing. A call waiting to take the model alone goes first:
 *     reading calls that arrive meanwhile wait behind it, so a train step is
 *     not starved by threads that predict without pause. So a dl_predict that
 *     overlaps a train step returns the outputs of the model before or after
 *     that step (or DL_BUSY after waiting), never a mix. dl_model_free never
 *     waits: a model in use is not freed (see dl_model_free). A call made from
 *     a progress callback on the model whose call is running it gets DL_BUSY
 *     at once, except a reading call inside a reading one, which proceeds.
 *   - A standalone layer or loss (dl_layer, dl_loss) is used by one call at a
 *     time: a call on one in use by another thread waits for it up to 0.25 s,
 *     then returns DL_BUSY.
 *   - A data set (dl_dataset) is only read after loading: any number of
 *     threads may use one at once.
 *   - dl_last_error() is per thread.
 */
#ifndef DEEPLEARNING_H
#define DEEPLEARNING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef DL_API
#  if defined(__GNUC__) || defined(__clang__)
#    define DL_API __attribute__((visibility("default")))
#  else
#    define DL_API
#  endif
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                   */
/* ------------------------------------------------------------------------ */

/* The project's one record of its version: the build, the installed packages,
   dl_version() and the Python package all take it from these three numbers. */
#define DL_VERSION_MAJOR 0
#define DL_VERSION_MINOR 1
#define DL_VERSION_PATCH 0
#define DL_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH */
#define DL_VERSION_NUMBER (DL_VERSION_MAJOR * 10000 + DL_VERSION_MINOR * 100 + DL_VERSION_PATCH)

/*
 * dl_version_number - the library's DL_VERSION_NUMBER.
 * Compare with the header's macro to detect a header/library mismatch.
 * Thread-safe.
 */
DL_API int dl_version_number(void);

/*
 * dl_version - the library's version as "MAJOR.MINOR.PATCH".
 * Returns: a static string; do not free it. Thread-safe.
 */
DL_API const char *dl_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes and messages                                                 */
/* ------------------------------------------------------------------------ */

#define DL_OK                0 /* success */
#define DL_ERROR             1 /* internal error (a bug in the library: please report it) */
#define DL_INVALID_ARGUMENT  2 /* NULL or dead handle, bad size, short buffer, label out of range */
#define DL_SPEC_ERROR        3 /* the JSON spec is malformed or describes an impossible model */
#define DL_IO_ERROR          4 /* a file could not be opened, read or written */
#define DL_FORMAT_ERROR      5 /* a file is damaged, of the wrong kind, or does not match the model */
#define DL_NOMEM             6 /* out of memory, or a size beyond the library's limits */
#define DL_NUMERIC           7 /* NaN or infinity in the input, targets or loss */
#define DL_UNSUPPORTED       8 /* not possible for this model (e.g. class labels with an MSE loss) */
#define DL_BUSY              9 /* the model is being used by another thread right now */
#define DL_CANCELLED        10 /* a progress callback stopped the call (dl_model_set_progress) */

/*
 * dl_status_string - fixed English text for a status code ("invalid argument").
 * Returns: a static string for any int (unknown codes give "unknown status");
 * do not free it. Thread-safe.
 */
DL_API const char *dl_status_string(int status);

/*
 * dl_last_error - the detailed message of the last call made on this thread
 * that failed, e.g. "specs/x.json: layers[2].units: expected a positive
 * integer, got -3". Successful calls reset it to "".
 * Returns: a thread-local string, valid until the next library call on this
 * thread; never NULL; do not free it.
 */
DL_API const char *dl_last_error(void);

/*
 * dl_last_accuracy - the training accuracy this thread last saw, as Keras shows
 * it during an epoch: the fraction of samples whose largest output, in the
 * forward pass of their training step (before its update), is at their class
 * (the label, or the largest entry of a one-hot or probability target row).
 *   - After dl_train_step(): that step's batch (NaN when it failed).
 *   - Inside a progress callback (dl_progress_fn): the samples reported so far
 *     (samples_done), for dl_train_epoch() as above and for
 *     dl_evaluate_dataset() the evaluated ones.
 * Other calls leave it as it was. NaN for a model whose loss is not a
 * classifier's (mse, huber, ...).
 */
DL_API double dl_last_accuracy(void);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * dl_set_num_threads - threads the library computes on: its own kernels, the
 * gathering of shuffled batches and the matrix products, which it cuts into
 * blocks (fixed by their shape) and runs one OpenBLAS call per block on these
 * threads. The calling thread plus n - 1 workers, n from 1 to 8 (values
 * outside are clamped). The default is the environment variable DL_NUM_THREADS
 * when set and positive, else one per CPU this process may run on, less one
 * when there are three or more: that CPU is left to the thread that gathers
 * the next shuffled batch during dl_train_epoch(). Results do not depend on it:
 * every output is computed by one thread, in the same order whatever the
 * count. The library sets OpenBLAS to one thread (openblas_set_num_threads(1),
 * once, before its first product), so OPENBLAS_NUM_THREADS has no effect on
 * it; a program that sets OpenBLAS's threads again for its own calls gives each
 * of the library's blocks those threads too. Calls on several threads at once
 * share one pool: a call that finds it busy runs on its own thread alone.
 * Thread-safe.
 */
DL_API void dl_set_num_threads(int n);

/* dl_get_num_threads - the current setting of dl_set_num_threads. Thread-safe. */
DL_API int dl_get_num_threads(void);

/* ------------------------------------------------------------------------ */
/* Models                                                                    */
/* ------------------------------------------------------------------------ */

/* A model: layers, loss, optimizer and their state. Opaque. */
typedef struct dl_model dl_model;

/*
 * dl_model_from_spec - build a model from a JSON spec file.
 *   path  path of the spec file (UTF-8).
 *   out   OUT: the new model on success; the caller owns it and frees it
 *         with dl_model_free(). Untouched on failure.
 * Returns: DL_OK, DL_INVALID_ARGUMENT (NULL argument), DL_IO_ERROR,
 * DL_SPEC_ERROR (message names the file, JSON path, what was expected and
 * what was found), DL_NOMEM (including a model beyond its memory budget).
 * The initial weights are drawn from the spec's seed: the same spec gives the
 * same model on every run.
 * Memory budget: the spec's "memory_budget" (MiB, default 1024) bounds the
 * activations, their gradients and the layers' workspaces (a convolution's
 * columns) one sample needs. A model needing more is refused here with
 * DL_NOMEM and a message naming the first layer that goes over, before any
 * of that memory is allocated; dl_predict and dl_evaluate work through large
 * batches in chunks of samples that fit the budget, so their peak memory does
 * not grow with the batch. A caller lowers or raises it in the spec's JSON.
 */
DL_API int dl_model_from_spec(const char *path, dl_model **out);

/*
 * dl_model_from_json - build a model from a JSON spec held in a string.
 *   json  NUL-terminated UTF-8 JSON text.
 *   out   OUT: the new model; the caller frees it with dl_model_free().
 * Returns: as dl_model_from_spec(); messages name the source "<string>".
 */
DL_API int dl_model_from_json(const char *json, dl_model **out);

/*
 * dl_model_clone - an independent deep copy of a model: parameters,
 * optimizer state, random generator and counters.
 *   model  the model to copy (not modified).
 *   out    OUT: the copy; the caller frees it with dl_model_free().
 * Threads may predict on one model at once (see Thread safety); a clone per
 * thread is only needed when each also trains its own copy.
 */
DL_API int dl_model_clone(const dl_model *model, dl_model **out);

/*
 * dl_model_free - release a model and everything it owns, including strings
 * returned by the dl_model_* introspection functions. NULL is a no-op; a
 * handle that was already freed is ignored. If another thread is using the
 * model at that moment, nothing is freed (freeing would pull the model from
 * under it): dl_last_error() says so, and the caller frees it again later.
 */
DL_API void dl_model_free(dl_model *model);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                               */
/* ------------------------------------------------------------------------ */

/*
 * dl_model_save - write the model to an HDF5 checkpoint: its spec,
 * parameters, optimizer state, random generator and training counters
 * (layout: docs/checkpoint-format.md). Training resumed from the checkpoint
 * continues exactly as if it had never stopped.
 *   model  the model (not modified).
 *   path   file to write (UTF-8). The file is written in the same folder and
 *          renamed over `path` only when complete and flushed, so an existing
 *          checkpoint is never left half-written. The temporary name is
 *          `<path>.dltmp-<pid>-<hex>`; every save first removes such files
 *          (and the `<path>.tmp-<pid>-<n>` of earlier versions) in its folder
 *          whose process no longer exists, so a save killed mid-write leaves
 *          its file only until the next save to that folder.
 * Writes checkpoint format version 2 (fixed-length strings); dl_model_load
 * reads versions 1 and 2.
 * Returns: DL_OK, DL_INVALID_ARGUMENT, DL_IO_ERROR, DL_BUSY.
 * Thread-safety: HDF5 calls are serialised on one process-wide lock, held
 * for the whole save; loads hold it only for an instant (see dl_model_load).
 */
DL_API int dl_model_save(const dl_model *model, const char *path);

/*
 * dl_model_load - read a model from an HDF5 checkpoint.
 *   path  file to read (UTF-8).
 *   out   OUT: the model; the caller frees it with dl_model_free().
 * Returns: DL_OK; DL_IO_ERROR (missing or unreadable file); DL_FORMAT_ERROR
 * (not HDF5, truncated, not a deeplearning checkpoint, a newer format
 * version, a missing or extra dataset, a wrong shape or type, NaN/Inf
 * values, a value outside what a spec allows: a learning rate outside
 * 0...1e6, a counter (optimizer step, epoch, samples seen) outside
 * 0...2^53; a file that crashes or hangs libhdf5; the message names the
 * dataset); DL_NOMEM; DL_IO_ERROR also when the reader process cannot be
 * started (fork or pipe failed).
 *
 * Untrusted files. A checkpoint or HDF5 data set may be crafted, and
 * libhdf5 1.10 does not defend against that (damaged variable-length data
 * makes it read wild memory or loop forever). So neither this function nor
 * dl_dataset_load_hdf5 runs libhdf5 on the file in the calling process: a
 * child process, forked for the load, runs libhdf5 (C only, no Swift, no
 * locks another thread could hold besides the HDF5 lock the parent holds
 * across fork()) and sends the file's contents through a pipe; the calling
 * process parses that stream with bounds checks. The guarantee:
 *   - a file that crashes libhdf5 ends the child only; the load returns
 *     DL_FORMAT_ERROR ("libhdf5 crashed reading the file (signal N ...)");
 *   - a load returns within its deadline, 10 s plus 1 ms per 8 KiB of file
 *     (a slower or hung reader is killed: DL_FORMAT_ERROR, "did not finish
 *     within N ms"). The environment variable DL_HDF5_TIMEOUT_MS, read at
 *     each load, replaces the 10 s (1...3600000 ms); the child also dies
 *     with the process (a host killed mid-load leaves no reader behind);
 *   - the process-wide HDF5 lock is held only while the child is forked,
 *     so a slow or hung load never blocks other threads' saves and loads;
 *   - every size the file claims is checked before anything of that size
 *     is allocated: a dataset's bytes against the storage the file holds
 *     for it (at most 1100 bytes per stored byte when compressed) and that
 *     storage against the file's size; a checkpoint's model may have at
 *     most 2^20 more parameters than the file stores values for;
 *   - the reader's address space is capped (what the caller's process has,
 *     plus 1 GiB, plus 16 bytes per byte of file), so libhdf5 cannot take
 *     the machine's memory for a crafted file.
 * Only hard links inside the file are followed (not soft or external
 * links). Limits: each load forks the calling process (copy-on-write; fork
 * runs the host's pthread_atfork handlers, OpenBLAS's included); a host that
 * reaps all children itself (SIGCHLD ignored) is supported, the stream's
 * end marker then decides; memory is bounded by the file's contents (held
 * twice briefly: in the child and in the caller), not by the deadline.
 */
DL_API int dl_model_load(const char *path, dl_model **out);

/* ------------------------------------------------------------------------ */
/* Training and inference                                                    */
/* ------------------------------------------------------------------------ */

/*
 * dl_train_step - one optimisation step on one mini-batch.
 *   model    the model to train.
 *   x        batch * input_size floats.
 *   batch    number of samples, >= 1.
 *   labels   batch class indices (classification losses), or NULL.
 *   targets  batch * output_size floats (regression targets, or one-hot /
 *            probability rows for cross-entropy), or NULL.
 *            Exactly one of labels and targets must be non-NULL.
 *   loss     OUT (may be NULL): the batch's mean loss before the update.
 * The update uses the current learning rate; a per-step schedule then moves
 * on to its next rate (a per-epoch one waits for dl_model_end_epoch()).
 * Returns: DL_OK; DL_INVALID_ARGUMENT; DL_UNSUPPORTED (labels with a
 * loss that takes none); DL_NUMERIC (NaN/Inf in x or targets, a non-finite
 * loss, or an update that would make a parameter or optimizer state NaN or
 * infinite, as a learning rate of 1e300 would, or batch norm's running
 * statistics infinite: the message names the parameter or layer; the step is
 * skipped and the parameters, the running statistics, the optimizer's state
 * and the step and sample counters are left unchanged, bit for bit); DL_BUSY.
 */
DL_API int dl_train_step(dl_model *model, const float *x, size_t batch,
                         const int32_t *labels, const float *targets, double *loss);

/*
 * dl_predict - the model's raw outputs (the last layer's values; logits for a
 * cross-entropy classifier) for count samples, in evaluation mode.
 *   x        count * input_size floats.
 *   count    number of samples, >= 1.
 *   out      OUT: receives count * output_size floats.
 *   out_len  number of floats out can hold; must be >= count * output_size.
 * Returns: DL_OK, DL_INVALID_ARGUMENT (including a short buffer), DL_NUMERIC,
 * DL_BUSY (another thread was training or changing the model for longer than
 * the wait described under Thread safety). The model is
 * not changed; any number of threads may call dl_predict, dl_predict_classes
 * and dl_evaluate on one model at once.
 */
DL_API int dl_predict(dl_model *model, const float *x, size_t count, float *out, size_t out_len);

/*
 * dl_predict_classes - the most likely class (argmax of the outputs) of each
 * of count samples.
 *   out      OUT: receives count labels.
 *   out_len  number of int32 out can hold; must be >= count.
 */
DL_API int dl_predict_classes(dl_model *model, const float *x, size_t count,
                              int32_t *out, size_t out_len);

/*
 * dl_evaluate - mean loss and accuracy over a dataset, in evaluation mode.
 *   x, count, labels, targets   as dl_train_step (count may be large; the
 *                                library works through it in chunks).
 *   loss      OUT (may be NULL): mean loss over the samples. A loss that is
 *             not finite (outputs overflow) gives DL_NUMERIC.
 *   accuracy  OUT (may be NULL): fraction in [0, 1] of samples whose argmax
 *             output equals the label (or the target row's argmax); NaN for
 *             regression losses.
 * The model is not changed.
 */
DL_API int dl_evaluate(dl_model *model, const float *x, size_t count,
                       const int32_t *labels, const float *targets,
                       double *loss, double *accuracy);

/*
 * dl_gradcheck - compare the model's back-propagated gradients with centred
 * finite differences, in float64, over the whole model and its loss on one
 * batch. A float32 model is checked through a float64 copy; the model itself
 * is not changed.
 *   x, batch, labels, targets   as dl_train_step.
 *   max_entries    entries checked per parameter tensor, spread evenly
 *                  (0 = all; each costs two forward passes).
 *   max_rel_error  OUT: the largest relative error over all parameters,
 *                  max|a - n| / max(max|a|, max|n|). Below 1e-7 is excellent,
 *                  above 1e-2 suspect, but only where gradients are not near
 *                  zero: a tensor whose true gradient is zero (a convolution's
 *                  bias before batch norm) shows rounding noise divided by
 *                  rounding noise, however correct it is. For a verdict use
 *                  dl_gradcheck_report().
 *   per_param      OUT (may be NULL): the relative error of each parameter
 *                  tensor, in dl_model_param_name() order.
 *   per_param_len  number of doubles per_param can hold; must be >=
 *                  dl_model_num_params() when per_param is not NULL.
 */
DL_API int dl_gradcheck(dl_model *model, const float *x, size_t batch,
                        const int32_t *labels, const float *targets,
                        size_t max_entries, double *max_rel_error,
                        double *per_param, size_t per_param_len);

/*
 * dl_gradcheck_report - dl_gradcheck with a verdict that holds where a true
 * gradient is zero, and both absolute and relative figures per parameter.
 * An entry passes when its analytical gradient a and centred difference n
 * agree as PyTorch's torch.autograd.gradcheck asks:
 *     |a - n| <= atol + rtol * |n|
 * and the model passes when every checked entry of every tensor does.
 *   x, batch, labels, targets, max_entries   as dl_gradcheck.
 *   atol, rtol  the tolerances: finite, >= 0, not both 0. PyTorch's defaults
 *               1e-5 and 1e-3 suit this float64 check (centred differences
 *               with step 1e-5 are good to about 1e-9 on a smooth loss).
 *   abs_error   OUT (may be NULL): per tensor, max|a - n|.
 *   rel_error   OUT (may be NULL): per tensor, the relative error as
 *               dl_gradcheck reports it.
 *   score       OUT (may be NULL): per tensor, the largest
 *               |a - n| / (atol + rtol * |n|); at most 1 passes.
 *   len         doubles each non-NULL array holds; must be >=
 *               dl_model_num_params() when any of them is not NULL. The
 *               arrays are in dl_model_param_name() order.
 *   passed      OUT: 1 when every tensor passes, else 0.
 * Returns: DL_OK (whatever the verdict); DL_INVALID_ARGUMENT (bad
 * arguments or tolerances); DL_NUMERIC (the loss is not finite); the model
 * is not changed. Thread-safety: as dl_gradcheck.
 */
DL_API int dl_gradcheck_report(dl_model *model, const float *x, size_t batch,
                               const int32_t *labels, const float *targets,
                               size_t max_entries, double atol, double rtol,
                               double *abs_error, double *rel_error, double *score,
                               size_t len, int *passed);

/*
 * dl_model_get_learning_rate / dl_model_set_learning_rate - the learning rate
 * of the next update. A spec's "schedule" (specs/README.md) changes it per
 * epoch or per update, from a base rate (the optimizer's "lr"); set changes
 * that base rate, so the schedule continues from it (with the default
 * constant schedule, the rate itself).
 *   lr  OUT for get; for set a number from 0 to 1e6 (the range a spec and
 *       dl_model_load accept, so that the model can always be saved and loaded).
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL or dead handle, or a bad lr for
 * set: nothing changes); DL_BUSY. Thread-safety: as every model function.
 */
DL_API int dl_model_get_learning_rate(const dl_model *model, double *lr);
DL_API int dl_model_set_learning_rate(dl_model *model, double lr);

/*
 * dl_model_set_preprocessing / dl_model_get_preprocessing - the transform
 * applied to every input before the first layer, in training, prediction and
 * evaluation alike: x' = (x * scale - mean) / std. It is part of the model's
 * spec ("preprocessing"), so checkpoints keep it. For MNIST bytes as the
 * tutorial prepares them: scale 1/255, then the training set's mean and std.
 *   scale, std  in [1e-12, 1e12]; mean in [-1e12, 1e12]. Defaults 1, 0, 1
 *               (identity). These are the spec's "preprocessing" ranges, the
 *               one set of rules for specs, set, dl_dataset_standardizer and
 *               checkpoints: whatever set accepts can be saved and loaded.
 *               Anything else gives DL_INVALID_ARGUMENT and changes nothing.
 *   OUT pointers of get may be NULL.
 */
DL_API int dl_model_set_preprocessing(dl_model *model, double scale, double mean, double std);
DL_API int dl_model_get_preprocessing(const dl_model *model, double *scale, double *mean, double *std);

/* ------------------------------------------------------------------------ */
/* Introspection                                                             */
/* ------------------------------------------------------------------------ */

/* dl_model_input_size - values per input sample (784 for MNIST). OUT: size. */
DL_API int dl_model_input_size(const dl_model *model, size_t *size);

/* dl_model_output_size - values per output sample (10 classes). OUT: size. */
DL_API int dl_model_output_size(const dl_model *model, size_t *size);

/* dl_model_param_count - total number of trainable scalars (101770 for the
 * tutorial's MLP). OUT: count. */
DL_API int dl_model_param_count(const dl_model *model, size_t *count);

/* dl_model_num_params - number of parameter tensors ("layers.0.weight",
 * "layers.0.bias", ...). OUT: count. */
DL_API int dl_model_num_params(const dl_model *model, size_t *count);

/*
 * dl_model_param_name - the name of parameter tensor `index`, such as
 * "layers.0.weight".
 *   name  OUT: a string owned by the model, valid until dl_model_free().
 */
DL_API int dl_model_param_name(const dl_model *model, size_t index, const char **name);

/*
 * dl_model_param_shape - the shape of parameter tensor `index` (a Linear
 * layer's weight is (out, in), its bias (out)).
 *   dims      OUT: receives the dimensions.
 *   dims_len  number of size_t dims can hold (4 is always enough).
 *   ndim      OUT: number of dimensions.
 */
DL_API int dl_model_param_shape(const dl_model *model, size_t index,
                                size_t *dims, size_t dims_len, size_t *ndim);

/*
 * dl_model_get_param / dl_model_set_param - copy parameter tensor `index`
 * out of or into the model, row-major, as floats.
 *   len  number of floats in the buffer; must equal the tensor's element count.
 * set refuses NaN/Inf values (DL_NUMERIC) and leaves the model unchanged.
 */
DL_API int dl_model_get_param(const dl_model *model, size_t index, float *out, size_t len);
DL_API int dl_model_set_param(dl_model *model, size_t index, const float *values, size_t len);

/* dl_model_num_layers - number of layers. OUT: count. */
DL_API int dl_model_num_layers(const dl_model *model, size_t *count);

/*
 * dl_model_layer_type - the spec type of layer `index` ("linear", "relu").
 *   type  OUT: a string owned by the model, valid until dl_model_free().
 */
DL_API int dl_model_layer_type(const dl_model *model, size_t index, const char **type);

/*
 * dl_model_layer_output_shape - the shape of one sample's output of layer
 * `index` ((128) for a linear layer of 128 units, (8, 14, 14) for 8 channels
 * of 14 x 14 after pooling), as model summaries print it.
 *   dims      OUT: receives the dimensions.
 *   dims_len  number of size_t dims can hold (4 is always enough).
 *   ndim      OUT: number of dimensions.
 */
DL_API int dl_model_layer_output_shape(const dl_model *model, size_t index,
                                       size_t *dims, size_t dims_len, size_t *ndim);

/*
 * Buffers: a model's non-trainable state, the running statistics of batch
 * normalisation ("layers.1.running_mean", "layers.1.running_var"). Training
 * updates them and evaluation uses them; checkpoints save them. They work as
 * the parameter functions above: dl_model_num_buffers (OUT count, 0 for a
 * model without batch norm), dl_model_buffer_name (a string owned by the
 * model, valid until dl_model_free()), dl_model_buffer_shape, and
 * dl_model_get_buffer / dl_model_set_buffer (len must equal the element
 * count; set refuses NaN/Inf with DL_NUMERIC and changes nothing; a variance
 * is not checked for being >= 0).
 */
DL_API int dl_model_num_buffers(const dl_model *model, size_t *count);
DL_API int dl_model_buffer_name(const dl_model *model, size_t index, const char **name);
DL_API int dl_model_buffer_shape(const dl_model *model, size_t index,
                                 size_t *dims, size_t dims_len, size_t *ndim);
DL_API int dl_model_get_buffer(const dl_model *model, size_t index, float *out, size_t len);
DL_API int dl_model_set_buffer(dl_model *model, size_t index, const float *values, size_t len);

/*
 * dl_model_spec_json - the JSON spec the model was built from.
 *   json  OUT: a string owned by the model, valid until dl_model_free().
 */
DL_API int dl_model_spec_json(const dl_model *model, const char **json);

/*
 * dl_model_step_count - number of optimisation steps applied so far.
 *   steps  OUT.
 */
DL_API int dl_model_step_count(const dl_model *model, uint64_t *steps);

/*
 * dl_model_end_epoch - counts an epoch of training as done, for callers that
 * run their own epochs of dl_train_step() (dl_train_epoch() does it itself):
 * the model's epoch counter goes up by one and a per-epoch learning-rate
 * schedule moves on to its next rate. Checkpoints keep the counter.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL or dead handle); DL_BUSY (the
 * model is in use by another thread).
 */
DL_API int dl_model_end_epoch(dl_model *model);

/*
 * dl_registry_json - every layer, loss, optimizer, learning-rate schedule and
 * initializer the library knows, with their options, as JSON:
 *   {"layer": [{"type": "linear", "doc": "...", "options": [{"name": "units",
 *     "value": "a positive integer", "required": true, "doc": "...",
 *     "schema": {...JSON Schema...}}, ...]}, ...], "loss": [...],
 *    "optimizer": [...], "schedule": [...], "initializer": [...]}
 * An option's "default" is present when it has one that is a valid value.
 * It is what specs/schema.json and specs/README.md are generated from, so
 * bindings can build their tables from it rather than copy them.
 * Returns: a string owned by the library, valid for the life of the
 * process; never NULL; do not free it. Thread-safe.
 */
DL_API const char *dl_registry_json(void);

/* ------------------------------------------------------------------------ */
/* Data sets                                                                 */
/* ------------------------------------------------------------------------ */
/*
 * A data set loaded from files into the library's memory: count samples of
 * feature_size floats each, sample after sample, and, when the files have
 * them, targets: one int32 class label per sample (a classifier's), or
 * target_size float values per sample (a regression model's, laid out like
 * the features). Values are kept as stored (MNIST pixels stay 0..255): a
 * model standardizes its own inputs (see dl_model_set_preprocessing and
 * dl_dataset_standardizer).
 *
 *     dl_dataset *train = NULL;
 *     if (dl_dataset_load_mnist("data/mnist", DL_SPLIT_TRAIN, &train) != DL_OK) { ... }
 *     double mean, std, loss;
 *     dl_dataset_standardizer(train, 1.0 / 255, &mean, &std);
 *     dl_model_set_preprocessing(m, 1.0 / 255, mean, std);
 *     for (int epoch = 0; epoch < 5; epoch++) dl_train_epoch(m, train, 64, 1, &loss);
 *     dl_dataset_free(train);
 *
 * A data set is never changed after loading, so several threads may use one
 * at once (to train different models, say); it must not be freed while
 * another thread is using it or a pointer it handed out.
 */

/* A data set. Opaque. */
typedef struct dl_dataset dl_dataset;

#define DL_SPLIT_TRAIN 0 /* MNIST's 60,000 training samples (train-*-ubyte) */
#define DL_SPLIT_TEST  1 /* MNIST's 10,000 test samples (t10k-*-ubyte) */

/*
 * dl_dataset_load_idx - images and labels in IDX files, MNIST's format
 * (unsigned bytes; gzipped or not).
 *   images  an IDX file of shape (N, H, W); the samples' shape is (1, H, W).
 *   labels  an IDX file of shape (N), or NULL for an unlabelled data set.
 *   out     OUT: the data set; the caller frees it with dl_dataset_free().
 *           Untouched on failure.
 * Returns: DL_OK, DL_INVALID_ARGUMENT (NULL images or out), DL_IO_ERROR,
 * DL_FORMAT_ERROR (wrong magic number, type or rank, truncated or overlong
 * file, damaged gzip data, image and label counts that differ; the message
 * names the file), DL_NOMEM.
 */
DL_API int dl_dataset_load_idx(const char *images, const char *labels, dl_dataset **out);

/*
 * dl_dataset_load_mnist - one split of MNIST from a folder holding its IDX
 * files under their usual names (train-images-idx3-ubyte[.gz],
 * t10k-labels-idx1-ubyte[.gz], ...). Both images and labels are required.
 *   split  DL_SPLIT_TRAIN or DL_SPLIT_TEST.
 *   out    OUT: the data set; free it with dl_dataset_free().
 * Returns: as dl_dataset_load_idx(); DL_INVALID_ARGUMENT for another split;
 * DL_IO_ERROR when a file is missing.
 */
DL_API int dl_dataset_load_mnist(const char *directory, int split, dl_dataset **out);

/*
 * dl_dataset_load_csv - a CSV file of numbers (gzipped or not), one sample
 * per row, the class label first, then the features (MNIST as CSV). A first
 * row that does not start with a number is a header and is skipped.
 *   feature_count  features per sample, or 0 to count them from the first
 *                  row. Given, rows must have feature_count + 1 columns (a
 *                  label and the features) or exactly feature_count columns:
 *                  then there is no label column and the data set is
 *                  unlabelled. The first row (header or data) decides which;
 *                  every row must agree with it. The samples' shape is
 *                  (feature_count).
 *   out            OUT: the data set; free it with dl_dataset_free().
 * Returns: DL_OK, DL_INVALID_ARGUMENT, DL_IO_ERROR, DL_FORMAT_ERROR (the
 * message points at the spot as path:line:column), DL_NOMEM.
 */
DL_API int dl_dataset_load_csv(const char *path, size_t feature_count, dl_dataset **out);

/*
 * dl_dataset_load_csv_targets - a CSV file of numbers (gzipped or not), one
 * sample per row: target_count target values first (a regression model's
 * targets, or one-hot rows), then the features. The layout rules are those
 * of dl_dataset_load_csv() with target_count columns in place of the label
 * column: a first row that does not start with a number is a header; rows of
 * exactly feature_count columns (when given) have no target columns, and the
 * data set then has no targets.
 *   feature_count  features per sample, or 0 to count them from the first
 *                  row (every column after the targets).
 *   target_count   target values per sample, >= 1 (dl_model_output_size()
 *                  of the model that learns them).
 *   out            OUT: the data set; free it with dl_dataset_free().
 *                  Untouched on failure.
 * Returns: DL_OK, DL_INVALID_ARGUMENT (NULL path or out, target_count 0),
 * DL_IO_ERROR, DL_FORMAT_ERROR (the message points at the spot as
 * path:line:column; values must be finite), DL_NOMEM.
 * Thread-safety: any thread; the new data set is the caller's.
 */
DL_API int dl_dataset_load_csv_targets(const char *path, size_t feature_count, size_t target_count,
                                       dl_dataset **out);

/*
 * dl_dataset_from_arrays - a data set made from arrays in the caller's memory,
 * which are copied (the caller may free or change them afterwards).
 *   x            count samples of `shape`, row-major floats, all finite.
 *   count        number of samples, >= 1.
 *   shape, ndim  the shape of one sample, ndim from 1 to 32 positive
 *                dimensions: (features) for rows, (1, 28, 28) for images.
 *   labels       count class labels >= 0, or NULL.
 *   targets      count * target_size finite target values, or NULL.
 *   target_size  target values per sample: >= 1 with targets, else 0.
 *   out          OUT: the data set; free it with dl_dataset_free().
 *                Untouched on failure.
 * At most one of labels and targets; with neither the data set has no targets.
 * Returns: DL_OK, DL_INVALID_ARGUMENT (NULL x, shape or out, bad sizes,
 * negative labels, labels and targets both given), DL_NUMERIC (NaN/Inf in x
 * or targets), DL_NOMEM.
 * Thread-safety: any thread; the new data set is the caller's.
 */
DL_API int dl_dataset_from_arrays(const float *x, size_t count, const size_t *shape, size_t ndim,
                                  const int32_t *labels, const float *targets, size_t target_size,
                                  dl_dataset **out);

/*
 * dl_dataset_borrow_arrays - dl_dataset_from_arrays without the copy of x:
 * the data set reads x in place (labels and targets, one value or row per
 * sample, are still copied). Use it for a large x that already lives in
 * memory the caller controls, such as a NumPy array or a memory-mapped file.
 *   x ... out    as for dl_dataset_from_arrays; x is checked to be finite
 *                (one pass that reads it) but never written.
 *   release      called once with user_data when the data set no longer
 *                needs x: from dl_dataset_free(), or before this function
 *                returns if it fails. NULL if the caller frees x itself,
 *                after dl_dataset_free().
 * x must stay valid until then. Changing x while a training or evaluation
 * call uses the data set is a data race; changing it between calls is
 * allowed and later calls see the new values (a NaN is then refused by the
 * step that meets it). Pointers from dl_dataset_features() point into x.
 * Returns: as dl_dataset_from_arrays.
 * Thread-safety: any thread; release runs on the thread that frees the set.
 */
typedef void (*dl_release_fn)(void *user_data);
DL_API int dl_dataset_borrow_arrays(const float *x, size_t count, const size_t *shape, size_t ndim,
                                    const int32_t *labels, const float *targets, size_t target_size,
                                    dl_release_fn release, void *user_data, dl_dataset **out);

/*
 * dl_dataset_load_hdf5 - an HDF5 file holding a dataset "x" of shape
 * (N, ...), floats or unsigned bytes, and optionally "y": integers of shape
 * (N) are class labels >= 0; floats of shape (N) or (N, k) are target
 * values, k per sample (1 for shape (N)). Without "y" the data set has no
 * targets. The samples' shape is x's without its first dimension. (h5py
 * writes this layout with f["x"] = images; f["y"] = labels.)
 *   out  OUT: the data set; free it with dl_dataset_free().
 * Returns: DL_OK, DL_INVALID_ARGUMENT, DL_IO_ERROR, DL_FORMAT_ERROR (not
 * HDF5, missing x, wrong shapes or types, NaN/Inf values in x or y, labels
 * outside 0...INT32_MAX, sizes the file cannot hold, a file that crashes or
 * hangs libhdf5; the message names the file and the dataset), DL_NOMEM.
 * The file is read as dl_model_load reads a checkpoint (see "Untrusted
 * files" there): in a child process, within the same deadline.
 * Thread-safety: any thread; the HDF5 lock is held only while forking.
 */
DL_API int dl_dataset_load_hdf5(const char *path, dl_dataset **out);

/*
 * dl_dataset_free - release a data set and its memory; pointers from
 * dl_dataset_features() and dl_dataset_labels() become invalid. NULL is a
 * no-op; a handle that was already freed, or is not a data set, is ignored.
 * If another thread is using the data set at that moment, nothing is freed:
 * dl_last_error() says so, and the caller frees it again later.
 */
DL_API void dl_dataset_free(dl_dataset *dataset);

/*
 * dl_dataset_info - the size of a data set.
 *   count         OUT (may be NULL): number of samples.
 *   feature_size  OUT (may be NULL): floats per sample (784 for MNIST).
 *   has_labels    OUT (may be NULL): 1 when every sample has a class label,
 *                 else 0 (no targets, or target values: see dl_dataset_targets).
 */
DL_API int dl_dataset_info(const dl_dataset *dataset, size_t *count, size_t *feature_size, int *has_labels);

/*
 * dl_dataset_sample_shape - the shape of one sample: (1, 28, 28) for MNIST
 * IDX images, (feature_count) for CSV rows, x's shape without its first
 * dimension for HDF5. The product of the dimensions is feature_size.
 *   dims      OUT: receives the dimensions.
 *   dims_len  number of size_t dims can hold (HDF5 data may have up to 31).
 *   ndim      OUT: number of dimensions.
 */
DL_API int dl_dataset_sample_shape(const dl_dataset *dataset, size_t *dims, size_t dims_len, size_t *ndim);

/*
 * dl_dataset_features - the features, count * feature_size floats, row-major,
 * sample after sample, as loaded.
 *   data  OUT: a pointer into the data set's memory, borrowed: valid until
 *         dl_dataset_free(), read-only; do not free it.
 */
DL_API int dl_dataset_features(const dl_dataset *dataset, const float **data);

/*
 * dl_dataset_labels - the class labels, count int32 values >= 0.
 *   labels  OUT: a pointer into the data set's memory, borrowed: valid until
 *           dl_dataset_free(), read-only; do not free it.
 * Returns: DL_OK; DL_INVALID_ARGUMENT for an unlabelled data set (labels is
 * left unchanged) and for a NULL or dead handle.
 */
DL_API int dl_dataset_labels(const dl_dataset *dataset, const int32_t **labels);

/*
 * dl_dataset_targets - the target values of a data set loaded with them
 * (dl_dataset_load_csv_targets, HDF5 with a float "y"): count * target_size
 * floats, row-major, sample after sample.
 *   values       OUT (may be NULL): a pointer into the data set's memory,
 *                borrowed: valid until dl_dataset_free(), read-only; do not
 *                free it. NULL when the data set holds class labels or no
 *                targets.
 *   target_size  OUT (may be NULL): values per sample; 0 when the data set
 *                holds class labels or no targets.
 * Returns: DL_OK for any live data set; DL_INVALID_ARGUMENT for a NULL or
 * dead handle.
 * Thread-safety: any thread, as every reading function of a data set.
 */
DL_API int dl_dataset_targets(const dl_dataset *dataset, const float **values, size_t *target_size);

/*
 * dl_dataset_standardizer - the statistics of the tutorial's standardization:
 * every feature is multiplied by scale, then mean and std are the mean and
 * the population standard deviation of all the scaled values (one pair for
 * the whole set, not one per feature). Passed to
 * dl_model_set_preprocessing(m, scale, mean, std), they make the model
 * standardize raw inputs itself, as dl train does with scale 1/255 on the
 * training set. The data set is not changed; labels play no part.
 *   scale  in [1e-12, 1e12] (1.0 / 255 for pixels 0..255).
 *   mean   OUT (may be NULL).
 *   std    OUT (may be NULL): at least 1e-12. Values that vary less after
 *          scaling get that floor (as Keras floors a std at its epsilon),
 *          so the result always obeys dl_model_set_preprocessing's rules.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (scale outside its range, all values
 * equal, or a scaled mean or std beyond 1e12: choose a smaller scale).
 */
DL_API int dl_dataset_standardizer(const dl_dataset *dataset, double scale, double *mean, double *std);

/*
 * dl_progress_fn - a progress callback of the long calls on a model,
 * dl_train_epoch() and dl_evaluate_dataset(), set with dl_model_set_progress().
 * It is called on the calling thread after every finished training step, or
 * every finished chunk of samples of an evaluation (as many as the model
 * predicts at once), so a program can draw progress and stop a long call.
 *   user_data     the pointer given to dl_model_set_progress(), as given.
 *   done          steps (or chunks) finished by this call so far, 1..total.
 *   total         steps (or chunks) the whole call makes.
 *   samples_done  samples trained on (or evaluated) by this call so far.
 *   mean_loss     mean loss of those samples (for training, each batch's loss
 *                 taken before its update, weighted by batch size).
 * Returns: 0 to go on; any other value stops the call at once, and it returns
 * DL_CANCELLED. A stopped dl_train_epoch() leaves the model as after its last
 * finished step: every step before is applied in full and nothing of a next
 * one, but the epoch counter is not advanced, the per-epoch learning-rate
 * decay is not applied, and the OUT mean loss is not written; the model's
 * generator has drawn the epoch's order (a checkpoint saved then resumes from
 * there, not from the epoch's start). A stopped dl_evaluate_dataset() changes
 * nothing. Returning non-zero after the last step still cancels.
 * The callback must not use the same model (the model is held by the running
 * call: such calls get DL_BUSY at once; only reading calls such as dl_predict
 * during dl_evaluate_dataset(), which reads the model too, go through); other
 * models and data sets are fine. It should return quickly: it runs between
 * steps.
 *
 * Stopping a training run on Ctrl-C, for example:
 *
 *     static volatile sig_atomic_t interrupted;
 *     static void on_sigint(int sig) { (void)sig; interrupted = 1; }
 *     static int keep_going(void *user_data, size_t done, size_t total,
 *                           size_t samples_done, double mean_loss) {
 *         fprintf(stderr, "\r%zu/%zu loss %.4g", done, total, mean_loss);
 *         return interrupted;              // non-zero stops the epoch
 *     }
 *     ...
 *     signal(SIGINT, on_sigint);
 *     dl_model_set_progress(m, keep_going, NULL);
 *     if (dl_train_epoch(m, train, 64, 1, &loss) == DL_CANCELLED) dl_model_save(m, "stopped.h5");
 */
typedef int (*dl_progress_fn)(void *user_data, size_t done, size_t total, size_t samples_done, double mean_loss);

/*
 * dl_model_set_progress - sets (or, with fn NULL, removes) the model's
 * progress callback, called by its dl_train_epoch() and dl_evaluate_dataset()
 * calls (see dl_progress_fn). One callback per model; a new one replaces the
 * old. It is not saved in checkpoints and not copied by dl_model_clone().
 *   fn         the callback, or NULL for none (the default).
 *   user_data  passed to fn as is; the library never reads or frees it (it
 *              must stay valid while the model may call fn).
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL or dead model); DL_BUSY (the model
 * is in use by another thread, or by the call that is running the callback).
 */
DL_API int dl_model_set_progress(dl_model *model, dl_progress_fn fn, void *user_data);

/*
 * dl_train_epoch - one epoch of mini-batch training over every sample of a
 * data set with targets (class labels or target values), as dl train does: batches of batch_size samples, the
 * last one holding the remainder, each one step of dl_train_step(). With
 * shuffle, samples are visited in a new order drawn from the model's own
 * seeded generator (saved in checkpoints, so a resumed run repeats what the
 * uninterrupted one does); without it, in order, so the epoch equals
 * dl_train_step() on consecutive batches. Afterwards the model's epoch
 * counter goes up by one and a per-epoch learning-rate schedule (the spec's
 * optimizer "schedule", or its older "lr_decay") moves on, as after
 * dl_model_end_epoch(). When a CPU is left over by the
 * kernels' threads (dl_set_num_threads), a shuffled epoch of a float32 model
 * gathers (and preprocesses) the next batch on a background thread while the
 * current one trains, ended before the call returns; the results are the same
 * bits as without it.
 *   model       a classifier (cross-entropy loss) for class labels; any model
 *               for target values.
 *   dataset     with targets; feature_size must equal dl_model_input_size(),
 *               and target values must number dl_model_output_size() per
 *               sample (for cross-entropy: one-hot or probability rows).
 *   batch_size  >= 1.
 *   shuffle     non-zero to shuffle.
 *   mean_loss   OUT (may be NULL): mean of the batches' losses (each taken
 *               before its update), weighted by batch size.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL or dead handles, a data set
 * without targets, a feature size that is not the model's input size, a
 * target size that is not its output size, batch_size 0, a label outside the
 * model's classes: nothing changes); DL_UNSUPPORTED (class labels for a model
 * whose loss is not cross-entropy); DL_NUMERIC (NaN/Inf in the data or a diverging loss:
 * the steps before it stay applied); DL_BUSY (the model is in use by another
 * thread); DL_CANCELLED (the model's progress callback stopped the epoch: see
 * dl_progress_fn for the state it leaves).
 */
DL_API int dl_train_epoch(dl_model *model, const dl_dataset *dataset, size_t batch_size, int shuffle,
                          double *mean_loss);

/*
 * dl_evaluate_dataset - dl_evaluate() over every sample of a data set with
 * targets: mean loss and accuracy, in evaluation mode.
 *   loss      OUT (may be NULL).
 *   accuracy  OUT (may be NULL): for a classifier, the fraction in [0, 1] of
 *             samples whose argmax output equals the label (or the argmax of
 *             the target row); NaN for a regression model.
 * Returns: as dl_train_epoch(). The model is not changed. The progress callback
 * (dl_model_set_progress) is called after every chunk of samples.
 */
DL_API int dl_evaluate_dataset(dl_model *model, const dl_dataset *dataset, double *loss, double *accuracy);

/* ------------------------------------------------------------------------ */
/* Data-parallel training                                                    */
/* ------------------------------------------------------------------------ */
/*
 * One model trained by several processes ("ranks", e.g. under mpirun), each
 * holding a copy: every training step sums what the ranks computed through a
 * reduction callback the caller provides, so every rank applies the same
 * update and all keep bit-identical parameters. The library does no
 * communication: the callback does (MPI_Allreduce, NCCL, anything that sums a
 * buffer element-wise across the ranks, in place). libdeeplearning_mpi
 * (deeplearning_mpi.h, built when MPI is found) provides one on MPI:
 *
 *     dl_mpi_init(&rank, &size);
 *     dl_model_set_gradient_reducer(m, rank, size, dl_mpi_reduce, NULL);
 *     dl_train_epoch(m, train, 64, 1, &loss);   // 64 samples per rank and step
 *
 * With a reducer set:
 *   - dl_train_epoch(): every rank passes the whole data set; all draw the
 *     same shuffle from the model's seed, and each step takes the next
 *     batch_size * world_size samples, of which rank r trains on the
 *     contiguous slice [r * m / N, (r + 1) * m / N) (m samples in the step,
 *     N ranks; batch_size each when the step is full). So N ranks with
 *     batch_size b take the steps one process takes with batch size N * b,
 *     equal up to float rounding (the order of the sums). Loss, accuracy and
 *     progress reports are over all ranks.
 *   - dl_train_step(): the caller passes this rank's own samples (batch may
 *     be 0: a rank with nothing this step still takes part); *loss and
 *     dl_last_accuracy() are over all ranks.
 *   - dl_evaluate() and dl_evaluate_dataset(): every rank passes the same
 *     samples; each evaluates its slice and all get the global figures.
 *   - These calls are collective: every rank must make them, in the same
 *     order, on models made from the same spec and seed (or loaded from the
 *     same checkpoint). The callback is called once per training step (and
 *     once per evaluation) on the calling thread.
 *   - A rank that meets an error before the reduction (NaN in its input,
 *     a label out of range, a non-finite loss) still joins it, flagged as
 *     failed: then every rank's call fails (that rank with its own error, the
 *     others with DL_NUMERIC or DL_INVALID_ARGUMENT naming how many ranks
 *     failed) and no rank's model changes.
 *   - Batch norm normalises with each rank's own batch statistics; its
 *     running statistics become the sample-weighted mean of the ranks'
 *     updates (the same on every rank). Dropout masks differ between ranks
 *     and repeat from the seed. A checkpoint written by any rank resumes on
 *     any number of ranks, or in one process.
 */

/*
 * dl_reduce_fn - sums `count` elements at `buffer` element-wise over every
 * rank, in place (MPI_Allreduce with MPI_IN_PLACE and MPI_SUM).
 *   user_data  as given to dl_model_set_gradient_reducer().
 *   buffer     float elements for dtype DL_FLOAT32, double for DL_FLOAT64
 *              (a float64 model's training steps; evaluations always pass
 *              5 doubles).
 * A training step's buffer, dl_model_reduce_count() elements, holds each
 * parameter's gradient times this rank's sample count (in an internal order,
 * the same on every rank of one spec), batch norm's running-statistic
 * updates, then loss sum, correct count, sample count and two failure
 * counts. Return 0 on success; anything else fails the step (DL_IO_ERROR,
 * nothing changed), and the callback must then fail on every rank alike.
 */
typedef int (*dl_reduce_fn)(void *user_data, void *buffer, size_t count, int dtype);

/*
 * dl_model_set_gradient_reducer - makes the model one of world_size ranks of
 * a data-parallel run (see above), or, with fn NULL, a single process again.
 *   rank        this process's rank, 0 <= rank < world_size.
 *   world_size  number of ranks, >= 1.
 *   fn          the reduction; NULL removes it (rank and world_size are then
 *               ignored).
 *   user_data   passed to fn as given (e.g. an MPI_Comm * for
 *               dl_mpi_reduce()).
 * The buffer the steps reduce is allocated here, once.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL or dead handle, rank out of
 * range, world_size < 1); DL_NOMEM; DL_BUSY.
 */
DL_API int dl_model_set_gradient_reducer(dl_model *model, int rank, int world_size, dl_reduce_fn fn,
                                         void *user_data);

/*
 * dl_model_reduce_count - the number of elements each training step hands its
 * reducer: the model's parameter count, plus two per batch-norm channel, plus
 * 5; 0 when no reducer is set. Its size in bytes times 2(N - 1)/N is what a
 * ring allreduce sends per rank and step (docs/distributed.md).
 *   count  OUT.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL or dead handle, NULL count);
 * DL_BUSY.
 */
DL_API int dl_model_reduce_count(const dl_model *model, size_t *count);

/* ------------------------------------------------------------------------ */
/* Standalone layers and losses                                              */
/* ------------------------------------------------------------------------ */
/*
 * The building blocks of a model, used one at a time: what the tutorial's
 * `Linear(784, 128)`, `ReLU()` and `MSELoss()` are. A layer's forward caches
 * what its backward needs; backward returns dL/dx and stores the parameters'
 * gradients, which the caller applies itself (p -= lr * grad).
 *
 * Data is row-major (rows, cols): rows samples of cols features each.
 * Elementwise layers accept any cols. As everywhere, NaN or infinite inputs,
 * predictions and targets are refused with DL_NUMERIC. Buffers hold elements of the handle's
 * dtype: float for DL_FLOAT32, double for DL_FLOAT64, passed as void *.
 */

#define DL_FLOAT32 0 /* float elements */
#define DL_FLOAT64 1 /* double elements */

/* A standalone layer. Opaque. */
typedef struct dl_layer dl_layer;
/* A standalone loss. Opaque. */
typedef struct dl_loss dl_loss;

/*
 * dl_layer_from_json - build one layer from a layer object as written in a
 * spec's "layers" list; a linear layer must give "in_features":
 * {"type": "linear", "in_features": 784, "units": 128}, {"type": "relu"}.
 *   dtype  DL_FLOAT32 or DL_FLOAT64: the element type of every buffer.
 *   seed   seed of the initial weights (He normal unless "init" says).
 *   out    OUT: the layer; free it with dl_layer_free().
 * Activations, "dropout" and "softmax" then take samples of any number of
 * features. Every other layer is built for one input size and refuses any
 * other with DL_INVALID_ARGUMENT: a linear layer for its "in_features", and
 * a layer that needs its input's shape ("flatten", "reshape", "batch_norm",
 * ...) for samples of one feature; build those with
 * dl_layer_from_json_shaped() for the samples they will see.
 * Returns: DL_OK, DL_INVALID_ARGUMENT, DL_SPEC_ERROR, DL_NOMEM.
 */
DL_API int dl_layer_from_json(const char *json, int dtype, uint64_t seed, dl_layer **out);

/*
 * dl_layer_from_json_shaped - as dl_layer_from_json(), for samples of a fixed
 * shape, as a layer inside a model sees them after its earlier layers: what
 * "conv2d", "max_pool2d", "avg_pool2d" and "batch_norm" on images need
 * (shape (channels, height, width)); any layer accepts it. Data then crosses
 * as (rows, cols) with cols the product of the shape, row-major per sample
 * (channel, row, column); dl_layer_output_shape() gives one sample's output
 * shape. Every call (forward, backward, output_features) with another number
 * of features per sample than the shape's product is refused with
 * DL_INVALID_ARGUMENT, whatever the layer type.
 *   shape, ndim  1 to 3 positive dimensions.
 * Returns: as dl_layer_from_json(); DL_INVALID_ARGUMENT for a bad shape, or
 * DL_SPEC_ERROR when the layer does not fit it (a kernel larger than the
 * padded input).
 */
DL_API int dl_layer_from_json_shaped(const char *json, const size_t *shape, size_t ndim, int dtype,
                                     uint64_t seed, dl_layer **out);

/*
 * dl_layer_output_shape - one sample's output shape of a layer made by
 * dl_layer_from_json_shaped() ((8, 14, 14) for 8 filters after 2 x 2 pooling
 * of 28 x 28).
 *   dims      OUT: receives the dimensions; dims_len how many it can hold (4).
 *   ndim      OUT: number of dimensions.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (a layer made without a shape, short dims).
 */
DL_API int dl_layer_output_shape(const dl_layer *layer, size_t *dims, size_t dims_len, size_t *ndim);

/* dl_layer_free - release a layer; NULL and dead handles are ignored. */
DL_API void dl_layer_free(dl_layer *layer);

/* dl_layer_type - the layer's spec type ("linear"). OUT: type, a string owned
 * by the layer, valid until dl_layer_free(). */
DL_API int dl_layer_type(const dl_layer *layer, const char **type);

/* dl_layer_output_features - output features per sample for in_features
 * input features (DL_INVALID_ARGUMENT when the layer cannot take them).
 *   out_features  OUT. */
DL_API int dl_layer_output_features(const dl_layer *layer, size_t in_features, size_t *out_features);

/*
 * dl_layer_forward - y = layer(x).
 *   x         rows * cols elements.
 *   training  non-zero for training behaviour (dropout, batch statistics).
 *   y         OUT: rows * out_features elements.
 *   y_len     number of elements y can hold.
 */
DL_API int dl_layer_forward(dl_layer *layer, const void *x, size_t rows, size_t cols,
                            int training, void *y, size_t y_len);

/*
 * dl_layer_backward - dL/dx from dL/dy, after dl_layer_forward(); stores the
 * parameters' gradients (see dl_layer_grad_data).
 *   dy      rows * cols elements, the shape of the last forward output.
 *   dx      OUT: the last input's shape.
 *   dx_len  number of elements dx can hold.
 */
DL_API int dl_layer_backward(dl_layer *layer, const void *dy, size_t rows, size_t cols,
                             void *dx, size_t dx_len);

/* dl_layer_num_params - number of parameter tensors (linear: 2). OUT: count. */
DL_API int dl_layer_num_params(const dl_layer *layer, size_t *count);

/* dl_layer_param_name - "weight" or "bias". OUT: name, owned by the layer. */
DL_API int dl_layer_param_name(const dl_layer *layer, size_t index, const char **name);

/* dl_layer_param_shape - as dl_model_param_shape (linear weight (out, in)). */
DL_API int dl_layer_param_shape(const dl_layer *layer, size_t index,
                                size_t *dims, size_t dims_len, size_t *ndim);

/*
 * dl_layer_param_data / dl_layer_grad_data - the memory of parameter `index`
 * and of its gradient, in the layer's dtype, row-major.
 *   data  OUT: a pointer into the layer, valid until dl_layer_free(); it never
 *         moves. Reading and writing it updates the layer in place. Do not
 *         use it while another thread calls the layer.
 */
DL_API int dl_layer_param_data(dl_layer *layer, size_t index, void **data);
DL_API int dl_layer_grad_data(dl_layer *layer, size_t index, void **data);

/*
 * dl_layer_num_buffers, dl_layer_buffer_name, dl_layer_buffer_shape,
 * dl_layer_buffer_data - a layer's non-trainable state, as the parameter
 * functions above give its parameters: batch_norm has "running_mean" and
 * "running_var" (channels,), other layers none. A forward pass in training mode
 * updates them (a standalone layer has no step to refuse); reading and writing
 * the memory of dl_layer_buffer_data reads and sets them in place, with the
 * same rules as dl_layer_param_data.
 */
DL_API int dl_layer_num_buffers(const dl_layer *layer, size_t *count);
DL_API int dl_layer_buffer_name(const dl_layer *layer, size_t index, const char **name);
DL_API int dl_layer_buffer_shape(const dl_layer *layer, size_t index,
                                 size_t *dims, size_t dims_len, size_t *ndim);
DL_API int dl_layer_buffer_data(dl_layer *layer, size_t index, void **data);

/*
 * dl_loss_from_json - build a loss as written in a spec's "loss":
 * "\"mse\"", "{\"type\": \"huber\", \"delta\": 1.0}",
 * "{\"type\": \"cross_entropy\", \"label_smoothing\": 0.1}",
 * "\"binary_cross_entropy\"" (dl_registry_json() lists them all).
 *   json   the loss, as in a spec.
 *   dtype  DL_FLOAT32 or DL_FLOAT64: the element type of pred, targets, grad.
 *   out    OUT: free it with dl_loss_free().
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL pointers, a bad dtype);
 * DL_SPEC_ERROR (an unknown loss or option, named in dl_last_error()).
 */
DL_API int dl_loss_from_json(const char *json, int dtype, dl_loss **out);

/* dl_loss_free - release a loss; NULL and dead handles are ignored. */
DL_API void dl_loss_free(dl_loss *loss);

/*
 * dl_loss_forward - the mean loss of predictions (rows, cols) against class
 * labels (rows int32, cross-entropy only) or targets (rows * cols elements);
 * exactly one of labels and targets is non-NULL. Caches dL/dpred.
 *   value  OUT: the loss.
 */
DL_API int dl_loss_forward(dl_loss *loss, const void *pred, size_t rows, size_t cols,
                           const int32_t *labels, const void *targets, double *value);

/*
 * dl_loss_backward - dL/dpred of the last dl_loss_forward().
 *   grad      OUT: rows * cols elements.
 *   grad_len  number of elements grad can hold.
 */
DL_API int dl_loss_backward(dl_loss *loss, void *grad, size_t grad_len);

/* ------------------------------------------------------------------------ */
/* Model files in other formats: ONNX, safetensors (export and import)      */
/* ------------------------------------------------------------------------ */

/*
 * dl_model_export - write the model to a file in another framework's format.
 *   model   the model (not modified).
 *   path    file to write (UTF-8), replaced atomically (written under a
 *           temporary name in the same folder, then renamed).
 *   format  "onnx": an ONNX inference graph (opset 20, IR version 9) that
 *           takes the raw input, as dl_predict() does (the spec's
 *           preprocessing becomes Mul/Sub/Div nodes), with a symbolic batch
 *           dimension, float32 weights named like the parameters, dropout left
 *           out, and the spec's JSON and the library version in its
 *           metadata_props; docs/onnx.md has the operator table.
 *           "h5": this library's checkpoint, as dl_model_save().
 *           "safetensors": the parameters and buffers as the PyTorch state dict
 *           of the same network's torch.nn.Sequential, where layer i is module
 *           i ("0.weight", "0.bias", batch norm's "1.running_mean",
 *           "1.running_var" and int64 "1.num_batches_tracked", the optimizer
 *           step count), F32 or F64 as the model's dtype, the spec's JSON in
 *           the metadata under "deeplearning.spec"; and, beside it, the Python
 *           source of that nn.Sequential ("model.safetensors" -> "model.py",
 *           any other name + ".py"), so that
 *           net.load_state_dict(safetensors.torch.load_file(path)) loads it.
 *           An existing .py file that this library did not write is not
 *           replaced (DL_IO_ERROR). docs/interop.md has the module table.
 *           NULL: from the extension of path (".onnx"; ".h5", ".hdf5";
 *           ".safetensors").
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL model or path, dead handle, no
 * format and an extension that names none); DL_UNSUPPORTED (an unknown
 * format, named in dl_last_error()); DL_IO_ERROR; DL_BUSY.
 * Thread-safety: as dl_model_save().
 */
DL_API int dl_model_export(const dl_model *model, const char *path, const char *format);

/*
 * dl_model_import - read a model written in another framework's format, as an
 * ordinary trainable model.
 *   path          file to read (UTF-8).
 *   format        "onnx", "h5" (as dl_model_load()), "safetensors", or NULL
 *                 for the extension of path.
 *   options_json  NULL, or a JSON object with the spec settings the file does
 *                 not say: "loss", "optimizer", "name", "seed", "init",
 *                 "dtype", each as in a spec file. An ONNX graph this library
 *                 exported brings back its own; otherwise the loss defaults
 *                 to "cross_entropy" for a flat output of several values and
 *                 to "mse" for one value, the optimizer to
 *                 {"type": "adam", "lr": 0.001}. "h5" takes no options.
 *                 "safetensors" takes {"spec": S}: the spec of the model whose
 *                 state dict the file holds, S a JSON object, a spec's JSON
 *                 text (a string starting with "{") or a spec file's path;
 *                 without it, the spec an exported file carries.
 *   out           OUT: the model; the caller frees it with dl_model_free().
 *                 dl_model_spec_json() gives the spec that describes it.
 * An ONNX graph must be a chain of the operators of docs/onnx.md (Gemm,
 * MatMul + Add, Conv, MaxPool, AveragePool, BatchNormalization, the
 * activations, Flatten, Reshape by a constant shape; Identity and Dropout
 * skipped; scalar Mul/Sub/Div at the front read as the preprocessing), as
 * torch.onnx.export and tf2onnx write MLPs and CNNs.
 * A safetensors file must hold exactly the tensors of the spec's model under
 * their nn.Sequential names (see dl_model_export), each with the model's shape;
 * F32, F64, F16 and BF16 are converted to the model's dtype (a value beyond
 * float32's range is refused), "num_batches_tracked" must be an I64 scalar (its
 * value is not kept). The file is checked whole before any value is used: the
 * header length (at most 16 MiB, within the file), the JSON header (json-c),
 * each entry's dtype, shape and data_offsets, whose byte ranges must have
 * exactly product(shape) times the dtype's size bytes and lie back to back
 * over the whole data, and "__metadata__", an object of strings.
 * Returns: DL_OK; DL_INVALID_ARGUMENT (NULL path or out, an unknown key in
 * options_json); DL_IO_ERROR (missing or unreadable file); DL_FORMAT_ERROR
 * (not ONNX, truncated, a tensor whose data does not match its dims; a
 * malformed safetensors file, or one whose tensors are missing, unexpected,
 * of another shape or of a non-float dtype for the spec's model, named in
 * dl_last_error());
 * DL_UNSUPPORTED (an operator, attribute, element type or graph shape this
 * library cannot express, or a node reading a value that is neither the
 * previous node's output nor an initializer or constant (a missing
 * initializer): dl_last_error() names the node and its operator; an unknown
 * format); DL_SPEC_ERROR (an option in options_json, or the spec it gives a
 * safetensors import); DL_INVALID_ARGUMENT also for a safetensors import
 * without a spec in options_json or in the file; DL_NOMEM (sizes beyond the
 * library's limits).
 */
DL_API int dl_model_import(const char *path, const char *format, const char *options_json,
                           dl_model **out);

/*
 * Keras formats of dl_model_export() and dl_model_import() (docs/interop.md):
 *   "keras"          a Keras 3 archive (.keras: a zip of config.json,
 *                    metadata.json and model.weights.h5). Export writes a
 *                    Sequential model with channels_first images, so
 *                    keras.models.load_model() gives a model that predicts
 *                    what dl_predict() does on the same raw inputs (the
 *                    preprocessing becomes a Rescaling layer); the spec rides
 *                    in metadata.json and comes back on import. NULL format:
 *                    the extension ".keras".
 *   "keras_h5"       a legacy Keras HDF5 model (root attribute model_config,
 *                    group /model_weights). Import with a NULL format reads a
 *                    ".h5" or ".hdf5" as this when it has Keras's model_config
 *                    or /model_weights, as a checkpoint ("h5") otherwise;
 *                    export writes it only when named (".h5" is a checkpoint).
 *   "keras_weights"  import only: a Keras 3 ".weights.h5" (model.save_weights),
 *                    which has no architecture: options_json must hold "spec"
 *                    (a spec object, or the path of a spec file) and may hold
 *                    "data_format" ("channels_last", the default, or
 *                    "channels_first": how the Keras model stored images).
 * Import reads Sequential models and functional models that are a chain, of
 * InputLayer, Dense, Conv2D, MaxPooling2D, AveragePooling2D,
 * GlobalAveragePooling2D, BatchNormalization, Dropout, Flatten, Reshape,
 * Activation, ReLU, LeakyReLU, ELU, Softmax, and Rescaling/Normalization at
 * the front (the preprocessing); channels_last models are converted exactly
 * (kernels transposed, the Dense after a Flatten with its rows reordered from
 * (H, W, C) to (C, H, W)), and take (C, H, W) images. options_json takes the
 * keys of the ONNX import; without them the file's loss and optimizer are
 * used when this library has them (SGD, Adam, AdamW, RMSprop), the defaults
 * above otherwise. Untrusted files are read safely: zip entry sizes are
 * checked before extraction, HDF5 is read in a child process.
 * Returns, besides those above: DL_FORMAT_ERROR (not a zip, a truncated or
 * damaged archive, no config.json or model.weights.h5, a weight whose shape
 * differs from the config's); DL_UNSUPPORTED (a layer class or option
 * without an exact equivalent here, e.g. "same" padding that pads unevenly,
 * dilation, regularizers: dl_last_error() names the layer and the option).
 */

#ifdef __cplusplus
}
#endif

#endif /* DEEPLEARNING_H */
