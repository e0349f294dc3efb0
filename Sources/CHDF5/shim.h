// Swift cannot import HDF5's global-variable macros (H5T_NATIVE_FLOAT is
// `(H5OPEN H5T_NATIVE_FLOAT_g)`) nor its flag macros; these inline functions
// make them callable.
#include <hdf5.h>
#include <stdio.h>

static inline hid_t dlh5_native_float(void)  { return H5T_NATIVE_FLOAT; }
static inline hid_t dlh5_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t dlh5_native_int64(void)  { return H5T_NATIVE_INT64; }
static inline hid_t dlh5_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t dlh5_native_uint8(void)  { return H5T_NATIVE_UINT8; }
static inline hid_t dlh5_native_int32(void)  { return H5T_NATIVE_INT32; }
static inline hid_t dlh5_c_s1(void)          { return H5T_C_S1; }
static inline hid_t dlh5_p_default(void)     { return H5P_DEFAULT; }
static inline hid_t dlh5_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t dlh5_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t dlh5_s_all(void)         { return H5S_ALL; }
static inline unsigned dlh5_f_acc_trunc(void)  { return H5F_ACC_TRUNC; }
static inline unsigned dlh5_f_acc_excl(void)   { return H5F_ACC_EXCL; }
static inline unsigned dlh5_f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned dlh5_f_acc_rdwr(void)   { return H5F_ACC_RDWR; }
static inline size_t   dlh5_variable(void)     { return H5T_VARIABLE; }
static inline hid_t dlh5_ieee_f32le(void)    { return H5T_IEEE_F32LE; }
static inline hid_t dlh5_ieee_f64le(void)    { return H5T_IEEE_F64LE; }
static inline hid_t dlh5_std_i64le(void)     { return H5T_STD_I64LE; }
static inline hid_t dlh5_std_u64le(void)     { return H5T_STD_U64LE; }
static inline hid_t dlh5_e_default(void)     { return H5E_DEFAULT; }

// HDF5 reports failures on an error stack (and prints it to stderr unless told not to).
// These two turn printing off and flatten the stack into one line for our messages.
static inline void dlh5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

typedef struct { char *buf; size_t len; size_t used; } dlh5_error_sink;

static herr_t dlh5_error_walk(unsigned n, const H5E_error2_t *e, void *data) {
    dlh5_error_sink *sink = (dlh5_error_sink *)data;
    if (sink->used + 1 >= sink->len || e->desc == NULL || e->desc[0] == '\0') return 0;
    int w = snprintf(sink->buf + sink->used, sink->len - sink->used, "%s%s", n == 0 ? "" : "; ", e->desc);
    if (w > 0) sink->used += (size_t)w < sink->len - sink->used ? (size_t)w : sink->len - sink->used - 1;
    return 0;
}

/// The current error stack, innermost first, as "desc; desc; ...", then clears it.
static inline void dlh5_error_message(char *buf, size_t len) {
    if (len == 0) return;
    buf[0] = '\0';
    dlh5_error_sink sink = { buf, len, 0 };
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, dlh5_error_walk, &sink);
    H5Eclear2(H5E_DEFAULT);
}
