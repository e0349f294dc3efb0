/* fuzz_idx_gz -- the IDX loader on gzip files: fuzz_idx.c with FUZZ_IDX_GZIP (see there). */
#define FUZZ_IDX_GZIP 1
#include "fuzz_idx.c"
