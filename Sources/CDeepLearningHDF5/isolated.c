// Reads untrusted HDF5 files in a forked child process; see include/dl_hdf5_isolated.h.
#define _GNU_SOURCE
#include "dl_hdf5_isolated.h"

#include <hdf5.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// MARK: - The lock

static pthread_mutex_t dlh5i_mutex = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

void dlh5i_lock(void) { pthread_mutex_lock(&dlh5i_mutex); }
void dlh5i_unlock(void) { pthread_mutex_unlock(&dlh5i_mutex); }

static pthread_rwlock_t blas_guard;
static pthread_once_t blas_guard_once = PTHREAD_ONCE_INIT;

static void make_blas_guard(void) {
    pthread_rwlockattr_t attributes;
    pthread_rwlockattr_init(&attributes);
    pthread_rwlockattr_setkind_np(&attributes, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&blas_guard, &attributes);
    pthread_rwlockattr_destroy(&attributes);
}

void dlh5i_blas_enter(void) {
    pthread_once(&blas_guard_once, make_blas_guard);
    pthread_rwlock_rdlock(&blas_guard);
}

void dlh5i_blas_leave(void) { pthread_rwlock_unlock(&blas_guard); }

// MARK: - The deadline

static _Atomic int64_t dlh5i_timeout_override = 0;

void dlh5i_set_timeout_ms(int64_t ms) { atomic_store(&dlh5i_timeout_override, ms); }

int64_t dlh5i_deadline_ms(int64_t file_size) {
    int64_t base = 10000;
    const char *env = getenv("DL_HDF5_TIMEOUT_MS");
    if (env != NULL) {
        char *end = NULL;
        long long v = strtoll(env, &end, 10);
        if (end != env && *end == '\0' && v >= 1 && v <= 3600000) base = (int64_t)v;
    }
    int64_t set = atomic_load(&dlh5i_timeout_override);
    if (set >= 1 && set <= 3600000) base = set;
    if (file_size < 0) file_size = 0;
    return base + file_size / 8192;
}

// MARK: - The child

// Limits of what the child reads; past them it reports an error instead.
#define DLH5I_MAX_OBJECTS 100000        // groups, datasets and attributes in all
#define DLH5I_MAX_DEPTH 8
#define DLH5I_MAX_STRING (64u << 20)    // one string (a model spec is a few KB)
#define DLH5I_MAX_RANK 32
// A filtered (compressed) dataset may claim at most this many bytes per stored byte:
// deflate, the filter h5py and most writers use, cannot exceed about 1032:1.
#define DLH5I_MAX_RATIO 1100

typedef struct {
    int fd;
    hid_t file;
    int64_t file_size;
    long objects;
    int failed;         // a write to the pipe failed: the parent is gone
} child_t;

static void put(child_t *c, const void *data, size_t n) {
    const unsigned char *p = data;
    while (n > 0 && !c->failed) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { c->failed = 1; return; }
        p += w;
        n -= (size_t)w;
    }
}
static void put_u8(child_t *c, uint8_t v) { put(c, &v, 1); }
static void put_u32(child_t *c, uint32_t v) { put(c, &v, 4); }
static void put_u64(child_t *c, uint64_t v) { put(c, &v, 8); }
static void put_str(child_t *c, const char *s, size_t n) {
    if (n > DLH5I_MAX_STRING) n = DLH5I_MAX_STRING;
    put_u32(c, (uint32_t)n);
    put(c, s, n);
}
static void put_cstr(child_t *c, const char *s) { put_str(c, s, strlen(s)); }

static herr_t error_walk(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    size_t used = strlen(buf);
    if (e->desc != NULL && e->desc[0] != '\0' && used + 3 < 512)
        snprintf(buf + used, 512 - used, "%s%s", n == 0 ? "" : "; ", e->desc);
    return 0;
}

/// Writes an 'E' record: `what` and HDF5's error stack. The child then stops.
static void fail(child_t *c, const char *what, const char *name) {
    char stack[512] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, error_walk, stack);
    H5Eclear2(H5E_DEFAULT);
    char message[1024];
    snprintf(message, sizeof message, "%s%s%s (%s)", what, name ? " " : "", name ? name : "",
             stack[0] ? stack : "no detail from HDF5");
    put_u8(c, 'E');
    put_cstr(c, message);
}

/// A string (variable- or fixed-length) read through `read` into a buffer of ours.
/// Returns 0, or -1 after writing an 'E' record.
static int read_string(child_t *c, hid_t type, const char *what, hid_t obj, int is_attribute,
                       char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));  // HDF5 converts no character set to another
        char *p = NULL;
        herr_t ok = is_attribute ? H5Aread(obj, mem, &p) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p);
        H5Tclose(mem);
        if (ok < 0) { fail(c, "cannot read", what); return -1; }
        size_t n = p ? strnlen(p, DLH5I_MAX_STRING + 1) : 0;
        if (n > DLH5I_MAX_STRING) { H5free_memory(p); fail(c, "string too long:", what); return -1; }
        *out = malloc(n + 1);
        if (*out == NULL) { H5free_memory(p); fail(c, "out of memory reading", what); return -1; }
        if (n) memcpy(*out, p, n);
        (*out)[n] = 0;
        *len = n;
        H5free_memory(p);
        return 0;
    }
    size_t size = H5Tget_size(type);
    if (size == 0 || size > DLH5I_MAX_STRING) { fail(c, "invalid string size of", what); return -1; }
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_size(mem, size + 1);
    H5Tset_cset(mem, H5Tget_cset(type));
    char *buf = calloc(size + 2, 1);
    if (buf == NULL) { H5Tclose(mem); fail(c, "out of memory reading", what); return -1; }
    herr_t ok = is_attribute ? H5Aread(obj, mem, buf) : H5Dread(obj, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Tclose(mem);
    if (ok < 0) { free(buf); fail(c, "cannot read", what); return -1; }
    *out = buf;
    *len = strnlen(buf, size + 1);
    return 0;
}

static int too_many(child_t *c) {
    if (++c->objects <= DLH5I_MAX_OBJECTS) return 0;
    put_u8(c, 'E');
    put_cstr(c, "the file holds more than 100000 objects and attributes");
    return 1;
}

typedef struct { child_t *c; const char *object; int stop; } attr_walk_t;

static herr_t write_attribute(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    attr_walk_t *w = data;
    child_t *c = w->c;
    if (too_many(c)) { w->stop = 1; return 1; }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) { fail(c, "cannot open attribute", name); w->stop = 1; return 1; }
    hid_t space = H5Aget_space(a);
    hid_t type = H5Aget_type(a);
    hssize_t points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    int status = 0;
    char kind = 'o';
    if (points == 1 && cls == H5T_INTEGER) kind = 'i';
    else if (points == 1 && cls == H5T_FLOAT) kind = 'f';
    else if (points == 1 && cls == H5T_STRING) kind = 's';
    int64_t i = 0;
    double f = 0;
    char *s = NULL;
    size_t slen = 0;
    if (kind == 'i' && H5Aread(a, H5T_NATIVE_INT64, &i) < 0) status = -1;
    if (kind == 'f' && H5Aread(a, H5T_NATIVE_DOUBLE, &f) < 0) status = -1;
    if (status < 0) fail(c, "cannot read attribute", name);
    else if (kind == 's') status = read_string(c, type, name, a, 1, &s, &slen);
    if (status == 0) {
        put_u8(c, 'A');
        put_cstr(c, w->object);
        put_cstr(c, name);
        put_u8(c, (uint8_t)kind);
        put_u64(c, points < 0 ? 0 : (uint64_t)points);
        if (kind == 'i') put(c, &i, 8);
        if (kind == 'f') put(c, &f, 8);
        if (kind == 's') put_str(c, s, slen);
    }
    free(s);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Aclose(a);
    if (status < 0) { w->stop = 1; return 1; }
    return 0;
}

static int write_attributes(child_t *c, hid_t obj, const char *path) {
    attr_walk_t w = { c, path, 0 };
    hsize_t idx = 0;
    if (H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_INC, &idx, write_attribute, &w) < 0 && !w.stop) {
        fail(c, "cannot list the attributes of", path);
        return -1;
    }
    return w.stop ? -1 : 0;
}

/// Checks that the dataset can hold `bytes` bytes of data (in the file's type): storage
/// allocated in the file, no more than the file's size, and for a filtered (compressed)
/// dataset at most DLH5I_MAX_RATIO bytes per stored byte. This is what makes "a huge
/// shape with no data" fail before anything of that size is allocated.
static int check_storage(child_t *c, hid_t d, const char *path, uint64_t bytes) {
    hsize_t stored = H5Dget_storage_size(d);
    hid_t dcpl = H5Dget_create_plist(d);
    int filters = dcpl >= 0 ? H5Pget_nfilters(dcpl) : -1;
    if (dcpl >= 0) H5Pclose(dcpl);
    char message[512];
    if (filters < 0) { fail(c, "cannot read the storage layout of", path); return -1; }
    if ((int64_t)stored < 0 || (int64_t)stored > c->file_size) {
        snprintf(message, sizeof message, "dataset %s claims %llu bytes of storage, more than the file's %lld bytes",
                 path, (unsigned long long)stored, (long long)c->file_size);
    } else if (filters == 0 && stored < bytes) {
        snprintf(message, sizeof message, "dataset %s needs %llu bytes but the file holds %llu bytes of its data",
                 path, (unsigned long long)bytes, (unsigned long long)stored);
    } else if (filters > 0 && bytes / DLH5I_MAX_RATIO > stored) {
        snprintf(message, sizeof message, "dataset %s claims %llu bytes compressed into %llu, beyond the %d:1 compression a file can hold",
                 path, (unsigned long long)bytes, (unsigned long long)stored, DLH5I_MAX_RATIO);
    } else {
        return 0;
    }
    put_u8(c, 'E');
    put_cstr(c, message);
    return -1;
}

static int write_dataset(child_t *c, hid_t d, const char *path) {
    hid_t space = H5Dget_space(d);
    hid_t type = H5Dget_type(d);
    int status = -1;
    void *data = NULL;
    if (space < 0 || type < 0) { fail(c, "cannot read the type or shape of", path); goto done; }
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0 || rank > DLH5I_MAX_RANK) { fail(c, "cannot read the shape of", path); goto done; }
    hsize_t dims[DLH5I_MAX_RANK];
    if (rank > 0 && H5Sget_simple_extent_dims(space, dims, NULL) < 0) { fail(c, "cannot read the shape of", path); goto done; }
    uint64_t points = 1;
    int overflow = 0;
    for (int k = 0; k < rank; k++) overflow |= __builtin_mul_overflow(points, (uint64_t)dims[k], &points);
    H5T_class_t cls = H5Tget_class(type);
    size_t type_size = H5Tget_size(type);
    int is_signed = cls == H5T_INTEGER && H5Tget_sign(type) != H5T_SGN_NONE;
    char klass = cls == H5T_INTEGER ? 'i' : cls == H5T_FLOAT ? 'f' : cls == H5T_STRING ? 's' : 'o';
    char payload = 0;
    hid_t mem = -1;
    size_t mem_size = 0;
    if (klass == 'f') { payload = type_size > 4 ? 'd' : 'f'; mem = type_size > 4 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT; mem_size = type_size > 4 ? 8 : 4; }
    if (klass == 'i' && type_size == 1 && !is_signed) { payload = 'b'; mem = H5T_NATIVE_UINT8; mem_size = 1; }
    else if (klass == 'i' && type_size <= 8) { payload = is_signed ? 'l' : 'q'; mem = is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64; mem_size = 8; }
    if (klass == 's' && points == 1 && !overflow) payload = 's';
    uint64_t bytes = 0, file_bytes = 0;
    if (payload && payload != 's') {
        if (overflow || __builtin_mul_overflow(points, (uint64_t)type_size, &file_bytes)) {
            fail(c, "the shape overflows 64 bits in dataset", path);
            goto done;
        }
        if (check_storage(c, d, path, file_bytes) < 0) goto done;
        if (__builtin_mul_overflow(points, (uint64_t)mem_size, &bytes) || bytes > ((uint64_t)1 << 40)) {
            fail(c, "more than 2^40 bytes of data in dataset", path);
            goto done;
        }
        data = malloc(bytes ? bytes : 1);
        if (data == NULL) { put_u8(c, 'E'); put_cstr(c, "out of memory in the HDF5 reader"); goto done; }
        if (bytes > 0 && H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
            fail(c, "cannot read dataset (the file may be truncated or damaged)", path);
            goto done;
        }
    }
    size_t slen = 0;
    if (payload == 's') {
        if (read_string(c, type, path, d, 0, (char **)&data, &slen) < 0) goto done;
        bytes = slen;
    }
    put_u8(c, 'D');
    put_cstr(c, path);
    put_u8(c, (uint8_t)klass);
    put_u32(c, (uint32_t)(type_size > UINT32_MAX ? UINT32_MAX : type_size));
    put_u8(c, (uint8_t)is_signed);
    put_u32(c, (uint32_t)rank);
    for (int k = 0; k < rank; k++) put_u64(c, dims[k]);
    put_u8(c, (uint8_t)payload);
    put_u64(c, payload ? bytes : 0);
    if (payload && bytes) put(c, data, bytes);
    status = 0;
done:
    free(data);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    return status;
}

static int write_object(child_t *c, const char *path, int recursive, int depth) {
    if (too_many(c)) return -1;
    if (strcmp(path, "/") != 0) {
        // Each component must exist: H5Oopen on a missing path only fails, but the
        // parent wants a missing root left out, not an error.
        char prefix[4096];
        size_t n = strlen(path);
        if (n >= sizeof prefix) { put_u8(c, 'E'); put_cstr(c, "an object name is too long"); return -1; }
        for (size_t k = 0; k <= n; k++) {
            if (k == n || path[k] == '/') {
                memcpy(prefix, path, k);
                prefix[k] = 0;
                if (k == 0) continue;
                if (H5Lexists(c->file, prefix, H5P_DEFAULT) <= 0) { H5Eclear2(H5E_DEFAULT); return 0; }
                // Only hard links are followed: a soft link could loop, an external
                // link would read another file into the model.
                H5L_info_t link;
                if (H5Lget_info(c->file, prefix, &link, H5P_DEFAULT) < 0 || link.type != H5L_TYPE_HARD) {
                    H5Eclear2(H5E_DEFAULT);
                    return 0;
                }
            }
        }
    }
    hid_t obj = H5Oopen(c->file, path, H5P_DEFAULT);
    if (obj < 0) { H5Eclear2(H5E_DEFAULT); return 0; }  // a dangling link: absent
    H5I_type_t kind = H5Iget_type(obj);
    int status = 0;
    if (kind == H5I_DATASET) {
        status = write_dataset(c, obj, path);
    } else if (kind == H5I_GROUP) {
        H5G_info_t info;
        if (H5Gget_info(obj, &info) < 0) { fail(c, "cannot read group", path); status = -1; goto done; }
        if (info.nlinks > DLH5I_MAX_OBJECTS) { put_u8(c, 'E'); put_cstr(c, "a group has more than 100000 members"); status = -1; goto done; }
        char **names = calloc(info.nlinks ? info.nlinks : 1, sizeof *names);
        if (names == NULL) { put_u8(c, 'E'); put_cstr(c, "out of memory in the HDF5 reader"); status = -1; goto done; }
        hsize_t got = 0;
        for (; got < info.nlinks; got++) {
            ssize_t len = H5Lget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, got, NULL, 0, H5P_DEFAULT);
            if (len < 0 || len > 4000) { fail(c, "cannot read a member name of", path); status = -1; break; }
            names[got] = malloc((size_t)len + 1);
            if (names[got] == NULL) { status = -1; break; }
            if (H5Lget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, got, names[got], (size_t)len + 1, H5P_DEFAULT) < 0) {
                fail(c, "cannot read a member name of", path); status = -1; break;
            }
        }
        if (status == 0) {
            put_u8(c, 'G');
            put_cstr(c, path);
            put_u32(c, (uint32_t)info.nlinks);
            for (hsize_t k = 0; k < info.nlinks; k++) put_cstr(c, names[k]);
            status = write_attributes(c, obj, path);
        }
        if (status == 0 && recursive && depth < DLH5I_MAX_DEPTH) {
            for (hsize_t k = 0; k < info.nlinks && status == 0 && !c->failed; k++) {
                char child[4096];
                int w = snprintf(child, sizeof child, "%s%s%s", strcmp(path, "/") == 0 ? "" : path,
                                 strcmp(path, "/") == 0 ? "" : "/", names[k]);
                if (w < 0 || (size_t)w >= sizeof child) { put_u8(c, 'E'); put_cstr(c, "an object name is too long"); status = -1; break; }
                status = write_object(c, child, recursive, depth + 1);
            }
        }
        for (hsize_t k = 0; k < got && k < info.nlinks; k++) free(names[k]);
        free(names);
    }
done:
    H5Oclose(obj);
    return status;
}

/// Caps the child's address space at what it has (a copy of the host's) plus 1 GiB plus
/// 16 bytes per byte of the file, so that libhdf5 cannot take the machine's memory for a
/// crafted file (a 17 KB file made it allocate 3.7 GB): past the cap its malloc fails and
/// the load is refused. Read with open/read, no stdio.
static void limit_memory(int64_t file_size) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char text[128];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return;
    text[n] = 0;
    unsigned long long pages = strtoull(text, NULL, 10);
    long page = sysconf(_SC_PAGESIZE);
    if (pages == 0 || page <= 0) return;
    unsigned long long have = 0, extra = 0, cap = 0;
    if (__builtin_mul_overflow(pages, (unsigned long long)page, &have)) return;
    if (__builtin_mul_overflow((unsigned long long)(file_size < 0 ? 0 : file_size), 16ull, &extra)) return;
    if (__builtin_add_overflow(have, extra, &cap) || __builtin_add_overflow(cap, 1ull << 30, &cap)) return;
    struct rlimit limit;
    if (getrlimit(RLIMIT_AS, &limit) != 0) return;
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur <= cap) return;
    limit.rlim_cur = cap;
    setrlimit(RLIMIT_AS, &limit);
}

static void child_main(int fd, const char *path, const char *const *roots, int nroots, int recursive, int64_t file_size) {
    child_t c = { fd, -1, file_size, 0, 0 };
    limit_memory(file_size);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    put(&c, "DLH5I1", 6);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    // The sec2 driver with no caching beyond HDF5's own defaults; close the file at once
    // when the child is done (no other objects are kept open).
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    c.file = H5Fopen(path, H5F_ACC_RDONLY, fapl >= 0 ? fapl : H5P_DEFAULT);
    if (c.file < 0) {
        fail(&c, "cannot open the HDF5 file, it may be damaged", NULL);
        put_u8(&c, 'Z');
        _exit(0);
    }
    for (int k = 0; k < nroots && !c.failed; k++) {
        if (write_object(&c, roots[k], recursive, 0) < 0) break;  // an 'E' record says why
    }
    put_u8(&c, 'Z');
    _exit(c.failed ? 1 : 0);
}

// MARK: - The parent

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/// Kills and reaps the child (it may already be gone, or reaped by a host that ignores
/// SIGCHLD: ECHILD is then expected).
static void kill_child(pid_t pid) {
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
}

int dlh5i_read(const char *path, const char *const *roots, int nroots, int recursive,
               int64_t file_size, size_t max_bytes,
               unsigned char **out, size_t *out_len, char *message, size_t message_len) {
    *out = NULL;
    *out_len = 0;
    if (message_len) message[0] = 0;
    int64_t deadline = now_ms() + dlh5i_deadline_ms(file_size);
    int fds[2];
    // The pipe is created, the child forked and our copy of the write end closed, all
    // under the lock: another thread's child (forked under the same lock) then never
    // inherits a write end of this pipe, which would delay our end of file. O_CLOEXEC
    // keeps it from programs that a host forks and executes meanwhile.
    pthread_once(&blas_guard_once, make_blas_guard);
    pthread_rwlock_wrlock(&blas_guard);   // no OpenBLAS call runs across the fork (see the header)
    dlh5i_lock();
    if (pipe2(fds, O_CLOEXEC) != 0) {
        int e = errno;
        dlh5i_unlock();
        pthread_rwlock_unlock(&blas_guard);
        snprintf(message, message_len, "cannot create a pipe for the HDF5 reader (%s)", strerror(e));
        return DLH5I_SYSTEM;
    }
    H5open();  // initialise libhdf5 in the parent, so the children never race on it
    const pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        // A reader must not outlive its caller: if the host dies mid-load (killed, or
        // crashed on another thread), nobody is left to stop a libhdf5 that loops, and
        // the orphan would spin forever. The kernel kills it with its parent; a parent
        // that died before this line is caught by the getppid() check.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        // Everything after fork: libhdf5 (whose state is consistent: the parent holds its
        // lock), malloc (glibc resets its locks in the child) and write. No Swift.
        // The host's signal handlers are not for this process: a crash must end it
        // quietly (not run Python's faulthandler or Swift's backtracer on a copy of the
        // host), so every signal gets its default action and none is blocked.
        for (int sig = 1; sig < NSIG; sig++) {
            if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        child_main(fds[1], path, roots, nroots, recursive, file_size);
        _exit(1);
    }
    int fork_errno = errno;
    close(fds[1]);
    dlh5i_unlock();
    pthread_rwlock_unlock(&blas_guard);
    if (pid < 0) {
        close(fds[0]);
        snprintf(message, message_len, "cannot start the HDF5 reader process (%s)", strerror(fork_errno));
        return DLH5I_SYSTEM;
    }

    size_t capacity = 1 << 16, used = 0;
    unsigned char *buffer = malloc(capacity);
    int result = DLH5I_OK;
    if (buffer == NULL) result = DLH5I_NOMEM;
    while (result == DLH5I_OK) {
        int64_t left = deadline - now_ms();
        if (left <= 0) { result = DLH5I_TIMEOUT; break; }
        struct pollfd p = { fds[0], POLLIN, 0 };
        int r = poll(&p, 1, left > 1000 ? 1000 : (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { result = DLH5I_SYSTEM; snprintf(message, message_len, "poll failed (%s)", strerror(errno)); break; }
        if (r == 0) continue;
        if (used == capacity) {
            if (capacity >= max_bytes) { result = DLH5I_TOO_LARGE; break; }
            size_t grown = capacity > max_bytes / 2 ? max_bytes : capacity * 2;
            unsigned char *b = realloc(buffer, grown);
            if (b == NULL) { result = DLH5I_NOMEM; break; }
            buffer = b;
            capacity = grown;
        }
        ssize_t n = read(fds[0], buffer + used, capacity - used);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) { result = DLH5I_SYSTEM; snprintf(message, message_len, "reading from the HDF5 reader failed (%s)", strerror(errno)); break; }
        if (n == 0) break;  // end of file: the child is done (or dead)
        used += (size_t)n;
    }
    close(fds[0]);
    if (result != DLH5I_OK) {
        kill_child(pid);
        free(buffer);
        if (result == DLH5I_TIMEOUT)
            snprintf(message, message_len, "reading the file did not finish within %lld ms (libhdf5 may loop on a damaged file); stopped",
                     (long long)dlh5i_deadline_ms(file_size));
        if (result == DLH5I_TOO_LARGE)
            snprintf(message, message_len, "the file's contents exceed %zu bytes", max_bytes);
        if (result == DLH5I_NOMEM)
            snprintf(message, message_len, "out of memory reading the file");
        return result;
    }
    // The pipe is closed: the child has exited or is about to. Reap it, waiting until the
    // deadline at most.
    int status = 0, reaped = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) { reaped = 1; break; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) break;  // ECHILD: the host reaps children itself; the stream decides
        if (now_ms() >= deadline) { kill_child(pid); break; }
        struct timespec t = { 0, 1000000 };
        nanosleep(&t, NULL);
    }
    if (reaped && WIFSIGNALED(status)) {
        free(buffer);
        snprintf(message, message_len, "libhdf5 crashed reading the file (signal %d: %s in the reader process); the file is damaged",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
        return DLH5I_CRASHED;
    }
    if (used == 0 || buffer[used - 1] != 'Z') {
        // Without the end record the stream is incomplete, whatever the exit status says
        // (the last record may also end in a 'Z' byte by chance: the parser checks it).
        free(buffer);
        snprintf(message, message_len, "the HDF5 reader process ended before finishing (exit status %d); the file is damaged",
                 reaped && WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return DLH5I_CRASHED;
    }
    *out = buffer;
    *out_len = used;
    return DLH5I_OK;
}
