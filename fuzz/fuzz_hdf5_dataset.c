/*
 * fuzz_hdf5_dataset -- the HDF5 data-set loader, dl_dataset_load_hdf5(), on
 * fuzzer-made files (the input is the file). libhdf5 itself is not
 * instrumented: the fuzzer steers by the library's own code, and AddressSanitizer
 * still stops on a crash inside libhdf5.
 */
#include "fuzz_dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_temp_path(4, ".h5");
    fuzz_write_file(path, data, size);
    dl_dataset *d = NULL;
    int status = dl_dataset_load_hdf5(path, &d);
    fuzz_check_dataset(status, d, "dl_dataset_load_hdf5");
    return 0;
}
