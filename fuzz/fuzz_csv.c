/*
 * fuzz_csv -- the CSV loaders, dl_dataset_load_csv() and
 * dl_dataset_load_csv_targets(), on fuzzer-made text.
 *
 * Input: a flags byte, then the file's bytes. Flags bits 0-2 choose
 * feature_count (0 = counted from the first row, 1-4, or the hostile sizes
 * below), bits 3-4 the loader and target_count (labels; 1, 2 or 3 targets),
 * bit 5 writes the file under a .csv.gz name (gzip data is still only sniffed:
 * fuzz_idx_gz covers valid gzip streams).
 */
#include "fuzz_dataset.h"

static const size_t feature_counts[8] = {
    0, 1, 2, 3, 4,
    (size_t)-1 / 2,              /* + 1 overflows a signed size */
    (size_t)-1,                  /* SIZE_MAX: refused */
    (size_t)1 << 40,             /* plausible size, impossible memory */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int flags = data[0];
    data++, size--;
    const char *path = fuzz_temp_path(flags & 32 ? 3 : 2, flags & 32 ? ".csv.gz" : ".csv");
    fuzz_write_file(path, data, size);
    size_t features = feature_counts[flags & 7];
    int targets = (flags >> 3) & 3;
    dl_dataset *d = NULL;
    if (targets == 0) {
        int status = dl_dataset_load_csv(path, features, &d);
        fuzz_check_dataset(status, d, "dl_dataset_load_csv");
    } else {
        int status = dl_dataset_load_csv_targets(path, features, (size_t)targets, &d);
        fuzz_check_dataset(status, d, "dl_dataset_load_csv_targets");
    }
    return 0;
}
