/*
 * fuzz_idx -- the IDX loader, dl_dataset_load_idx(), on fuzzer-made files.
 *
 * Input: a flags byte; with bit 0 set, a 2-byte little-endian length L and L
 * bytes of a labels file; the rest is the images file. (fuzz_idx_gz builds this
 * same source with FUZZ_IDX_GZIP: with bit 1 set, the files are gzip-compressed
 * by the harness first, so the decompression path sees valid gzip streams of
 * fuzzed contents; without it the bytes are written as is under a .gz name.)
 */
#include "fuzz_dataset.h"
#ifdef FUZZ_IDX_GZIP
#include <zlib.h>

/* data gzip-compressed into a new buffer (*out_size bytes); the caller frees it. */
static uint8_t *gzip(const uint8_t *data, size_t size, size_t *out_size) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&z, size) + 32;
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    *out_size = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}
#define FUZZ_SUFFIX ".gz"
#else
#define FUZZ_SUFFIX ".idx"
#endif

static void write_part(const char *path, const uint8_t *data, size_t size, int flags) {
#ifdef FUZZ_IDX_GZIP
    if (flags & 2) {
        size_t n = 0;
        uint8_t *z = gzip(data, size, &n);
        fuzz_write_file(path, z, n);
        free(z);
        return;
    }
#endif
    (void)flags;
    fuzz_write_file(path, data, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int flags = data[0];
    data++, size--;
    const char *images = fuzz_temp_path(0, FUZZ_SUFFIX), *labels = NULL;
    if (flags & 1) {
        if (size < 2) return 0;
        size_t n = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (n > size) n = size;
        labels = fuzz_temp_path(1, FUZZ_SUFFIX);
        write_part(labels, data, n, flags);
        data += n, size -= n;
    }
    write_part(images, data, size, flags);
    dl_dataset *d = NULL;
    int status = dl_dataset_load_idx(images, labels, &d);
    fuzz_check_dataset(status, d, "dl_dataset_load_idx");
    return 0;
}
