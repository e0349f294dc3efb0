/*
 * fuzz_keras_config -- the Keras config parser (config.json -> spec): the input is the
 * text of a Keras model config. The harness packs it as config.json into a .keras
 * archive (a stored zip it writes itself) beside a model.weights.h5 that is not HDF5,
 * and calls dl_model_import(path, "keras"). Every config is mapped to a spec, parsed and
 * built (the library reads the config before the weights), so the mapping of every layer
 * and option runs; the weights are then refused with DL_FORMAT_ERROR. Every second input
 * is also packed with config.json cut short, as a damaged archive entry.
 *
 * Checks: no crash, no DL_ERROR or unknown status, a failed call leaves OUT alone and
 * sets a message, and a config that gets as far as the weights fails for them alone.
 */
#include "fuzz_common.h"

#include <zlib.h>

#define FUZZ_MAX_INPUT (1u << 16)

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); }

/* A zip of the entries (names[i], data[i], sizes[i]), stored without compression.
 * `claim`: the size written in the headers of entry 0 (its real size when equal). */
static size_t make_zip(uint8_t *out, const char *const *names, const uint8_t *const *data,
                       const size_t *sizes, int count, uint32_t claim0) {
    size_t at = 0, offsets[4], central;
    for (int i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        uint32_t crc = (uint32_t)crc32(0L, data[i], (uInt)sizes[i]);
        uint32_t claimed = i == 0 ? claim0 : (uint32_t)sizes[i];
        offsets[i] = at;
        put32(out + at, 0x04034b50); put16(out + at + 4, 20); put16(out + at + 6, 0); put16(out + at + 8, 0);
        put16(out + at + 10, 0); put16(out + at + 12, 0x21); put32(out + at + 14, crc);
        put32(out + at + 18, claimed); put32(out + at + 22, claimed); put16(out + at + 26, (uint32_t)n); put16(out + at + 28, 0);
        memcpy(out + at + 30, names[i], n);
        memcpy(out + at + 30 + n, data[i], sizes[i]);
        at += 30 + n + sizes[i];
    }
    central = at;
    for (int i = 0; i < count; i++) {
        size_t n = strlen(names[i]);
        uint32_t crc = (uint32_t)crc32(0L, data[i], (uInt)sizes[i]);
        uint32_t claimed = i == 0 ? claim0 : (uint32_t)sizes[i];
        put32(out + at, 0x02014b50); put16(out + at + 4, 20); put16(out + at + 6, 20); put16(out + at + 8, 0);
        put16(out + at + 10, 0); put16(out + at + 12, 0); put16(out + at + 14, 0x21); put32(out + at + 16, crc);
        put32(out + at + 20, claimed); put32(out + at + 24, claimed); put16(out + at + 28, (uint32_t)n);
        put16(out + at + 30, 0); put16(out + at + 32, 0); put16(out + at + 34, 0); put16(out + at + 36, 0);
        put32(out + at + 38, 0); put32(out + at + 42, (uint32_t)offsets[i]);
        memcpy(out + at + 46, names[i], n);
        at += 46 + n;
    }
    put32(out + at, 0x06054b50); put16(out + at + 4, 0); put16(out + at + 6, 0); put16(out + at + 8, (uint32_t)count);
    put16(out + at + 10, (uint32_t)count); put32(out + at + 12, (uint32_t)(at - central)); put32(out + at + 16, (uint32_t)central);
    put16(out + at + 20, 0);
    return at + 22;
}

static void import_once(const char *path, int expect_weights_error) {
    dl_model *m = (dl_model *)&m;   /* a sentinel: a failed call must leave it */
    dl_model *const sentinel = m;
    int status = dl_model_import(path, "keras", NULL, &m);
    fuzz_check_status(status, "dl_model_import");
    if (status == DL_OK) fuzz_fail("a .keras with a model.weights.h5 that is not HDF5 imported");
    if (m != sentinel) fuzz_fail("dl_model_import failed (%d) but set out", status);
    const char *message = dl_last_error();
    if (message[0] == '\0') fuzz_fail("dl_model_import failed (%d) without a message", status);
    /* Reaching the weights means the config mapped to a spec that built. */
    char weights_prefix[600];
    snprintf(weights_prefix, sizeof weights_prefix, "%s: model.weights.h5: ", path);
    if (expect_weights_error && strncmp(message, weights_prefix, strlen(weights_prefix)) == 0 && status != DL_FORMAT_ERROR)
        fuzz_fail("the weights refused with status %d, not DL_FORMAT_ERROR: %s", status, message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > FUZZ_MAX_INPUT) return 0;
    static const uint8_t weights[] = "not an HDF5 file";
    static const char *const names[] = {"config.json", "model.weights.h5", "metadata.json"};
    static const uint8_t metadata[] = "{\"keras_version\": \"3.0.0\"}";
    const uint8_t *parts[] = {data, weights, metadata};
    size_t sizes[] = {size, sizeof weights - 1, sizeof metadata - 1};
    uint8_t *zip = malloc(size + 1024);
    const char *path = fuzz_temp_path(0, ".keras");
    size_t n = make_zip(zip, names, parts, sizes, 3, (uint32_t)size);
    fuzz_write_file(path, zip, n);
    import_once(path, 1);
    if (size > 0 && (data[0] & 1)) {
        /* config.json's headers claim more bytes than it has: a damaged entry. */
        n = make_zip(zip, names, parts, sizes, 3, (uint32_t)size + 1 + data[size - 1]);
        fuzz_write_file(path, zip, n);
        import_once(path, 0);
    }
    free(zip);
    return 0;
}
