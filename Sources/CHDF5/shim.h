// Swift cannot import HDF5's global-variable macros (H5T_NATIVE_FLOAT is
// `(H5OPEN H5T_NATIVE_FLOAT_g)`) nor its flag macros; these inline functions
// make them callable.
#include <hdf5.h>

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
