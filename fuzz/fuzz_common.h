/*
 * fuzz_common.h -- what every harness under fuzz/ shares.
 *
 * A harness is one C file that defines LLVMFuzzerTestOneInput() and drives the
 * library through Include/deeplearning.h alone, as a user's program does. It is
 * compiled twice from the same source:
 *   - with libFuzzer (clang -fsanitize=fuzzer,address), by scripts/fuzz.sh;
 *   - with -DFUZZ_REPLAY, which adds the main() below: a replay driver that runs
 *     the harness on given files and folders without libFuzzer. CMake builds it
 *     (fuzz/CMakeLists.txt) and ctest replays the committed seed corpora and every
 *     regression input, so `bash scripts/test.sh` runs them.
 *
 * Harnesses report a broken promise of the header (a model that saves but does
 * not load, a data set whose shape does not match its size) with fuzz_fail(),
 * which aborts: libFuzzer and the replay driver then treat it as a crash.
 */
#ifndef DL_FUZZ_COMMON_H
#define DL_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deeplearning.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Processes the library forks are not the host. The HDF5 reader's child parses
 * untrusted files with libhdf5 (1.10.8 on Debian 12), whose own memory errors on
 * crafted files it exists to contain: the child dies and the host gets an error, which
 * is what the harnesses check. Under AddressSanitizer such an error in the child would
 * run libFuzzer's death callback there, which writes the host's current input as a
 * crash of the host although the host went on. So a forked child drops the callback:
 * its sanitizer report still goes to the log, and it ends as the crash it would be
 * without sanitizers. (A weak reference: a build without sanitizers has no such function.)
 */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));
static void fuzz_in_forked_child(void) {
    if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(NULL);
}
__attribute__((constructor)) static void fuzz_watch_forks(void) { pthread_atfork(NULL, NULL, fuzz_in_forked_child); }

/* Aborts with a message: an invariant of the header does not hold. */
__attribute__((noreturn, format(printf, 1, 2)))
static void fuzz_fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    fprintf(stderr, "fuzz: invariant broken: ");
    vfprintf(stderr, format, args);
    va_end(args);
    fprintf(stderr, " (dl_last_error: %s)\n", dl_last_error());
    abort();
}

/* A status every call may return; anything else (an unknown code) is a bug. */
static void fuzz_check_status(int status, const char *call) {
    if (status < DL_OK || status > DL_CANCELLED) fuzz_fail("%s returned unknown status %d", call, status);
    if (status == DL_ERROR) fuzz_fail("%s returned DL_ERROR (an internal error)", call);
}

/* Removes the temporary files of process `pid` (this one at exit; the replay driver's
   children after they end, since a crash skips their exit handlers). */
static void fuzz_remove_temps_of(long pid) {
    const char *dirs[] = {"/dev/shm", getenv("TMPDIR"), "/tmp"};
    static const char *suffixes[] = {"", ".h5", ".csv", ".gz", ".idx", ".csv.gz", ".json", ".onnx"};
    for (int n = 0; n < 8; n++)
        for (int d = 0; d < 3; d++) {
            if (dirs[d] == NULL) continue;
            for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
                char path[600];
                snprintf(path, sizeof path, "%s/dlfuzz-%ld-%d%s", dirs[d], pid, n, suffixes[k]);
                unlink(path);
            }
        }
}
static void fuzz_remove_temps(void) { fuzz_remove_temps_of((long)getpid()); }

/*
 * A path for a temporary file of this process: <folder>/dlfuzz-<pid>-<n><suffix>,
 * in /dev/shm when it exists (no disk traffic per input), else TMPDIR or /tmp.
 * The same n gives the same path, so each harness reuses a few files.
 */
static const char *fuzz_temp_path(int n, const char *suffix) {
    static char paths[8][512];
    static int made[8];
    n &= 7;
    if (!made[n]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        if (dir == NULL || *dir == '\0') dir = "/tmp";
        snprintf(paths[n], sizeof paths[n], "%s/dlfuzz-%ld-%d%s", dir, (long)getpid(), n, suffix);
        made[n] = 1;
        static int registered;
        if (!registered) registered = atexit(fuzz_remove_temps) == 0;
    }
    return paths[n];
}

/* Writes size bytes to path (replacing it); aborts when it cannot (not the library's fault). */
static void fuzz_write_file(const char *path, const uint8_t *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

/* Reads every element of a borrowed array, so AddressSanitizer sees an overrun. */
static float fuzz_touch_floats(const float *p, size_t n) {
    volatile float sum = 0;
    for (size_t i = 0; i < n; i++) sum += p[i];
    return sum;
}

/* A small deterministic generator for inputs the harness makes up (xorshift64*). */
typedef struct { uint64_t s; } fuzz_rng;
static uint64_t fuzz_next(fuzz_rng *r) {
    r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}
static float fuzz_uniform(fuzz_rng *r) { return (float)(fuzz_next(r) >> 40) / (float)(1 << 24) * 2.0f - 1.0f; }
static fuzz_rng fuzz_seed(const uint8_t *data, size_t size) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a of the input */
    for (size_t i = 0; i < size; i++) h = (h ^ data[i]) * 1099511628211ull;
    fuzz_rng r = {h | 1};
    return r;
}

#ifdef FUZZ_REPLAY
/*
 * The replay driver: replay [--timeout S] [--expect-fail LIST] PATH...
 * A PATH that is a folder stands for its files (sorted, names starting with '.'
 * and README*, EXPECTED_FAILURES skipped). Each file runs in a child process
 * (this program again, with --one FILE) so that a crash is reported with its file
 * name and the others still run, bounded by the timeout (default 60 s).
 * LIST is a file of names (one per line, '#' comments) of inputs that are known to
 * crash until a fix lands elsewhere: their failure is reported as "expected" and
 * does not fail the run; their success is reported so that the name can be removed.
 * Exit status: 0 when every file passed (or failed as expected), 1 otherwise.
 */
#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static int fuzz_run_one(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) { fprintf(stderr, "replay: cannot open %s\n", path); return 2; }
    size_t cap = 1 << 16, size = 0;
    uint8_t *data = malloc(cap);
    size_t n;
    while (data != NULL && (n = fread(data + size, 1, cap - size, f)) > 0) {
        size += n;
        if (size == cap) { cap *= 2; data = realloc(data, cap); }
    }
    fclose(f);
    if (data == NULL) { fprintf(stderr, "replay: out of memory reading %s\n", path); return 2; }
    /* An exact-size copy, as libFuzzer passes it, so reading past the end is caught. */
    uint8_t *exact = malloc(size ? size : 1);
    if (size) memcpy(exact, data, size);
    free(data);
    LLVMFuzzerTestOneInput(exact, size);
    free(exact);
    /* What libFuzzer's -rss_limit_mb reports as an OOM: a small input must not need
       gigabytes (FUZZ_RSS_LIMIT_MB, default 1536, below scripts/fuzz.sh's 2048 because
       this process does not hold a fuzzer's corpus). */
    struct rusage usage;
    const char *limit_text = getenv("FUZZ_RSS_LIMIT_MB");
    long limit_mb = limit_text != NULL ? atol(limit_text) : 1536;
    if (getrusage(RUSAGE_SELF, &usage) == 0 && limit_mb > 0 && usage.ru_maxrss / 1024 > limit_mb) {
        fprintf(stderr, "replay: %s: out of memory: peak RSS %ld MB, limit %ld MB\n", path,
                usage.ru_maxrss / 1024, limit_mb);
        return 3;
    }
    return 0;
}

static int fuzz_compare(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int fuzz_listed(const char *list, const char *name) {
    if (list == NULL) return 0;
    FILE *f = fopen(list, "r");
    if (f == NULL) return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, " \t\r\n#")] = '\0';
        found = line[0] != '\0' && strcmp(line, name) == 0;
    }
    fclose(f);
    return found;
}

/* Runs one file in a child; returns its wait status text in `why` and 1 when it passed. */
static int fuzz_spawn(const char *self, const char *path, int timeout, char *why, size_t why_len) {
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%d", timeout);
    char *argv[] = {(char *)self, "--one", (char *)path, "--alarm", seconds, NULL};
    pid_t pid;
    if (posix_spawn(&pid, self, NULL, NULL, argv, environ) != 0) {
        snprintf(why, why_len, "cannot start a child: %s", strerror(errno));
        return 0;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    fuzz_remove_temps_of((long)pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 1;
    if (WIFSIGNALED(status))
        snprintf(why, why_len, "%s%s", strsignal(WTERMSIG(status)),
                 WTERMSIG(status) == SIGALRM ? " (timeout: a hang)" : "");
    else if (WEXITSTATUS(status) == 3)
        snprintf(why, why_len, "out of memory (peak RSS over the limit)");
    else
        snprintf(why, why_len, "exit status %d", WEXITSTATUS(status));
    return 0;
}

int main(int argc, char **argv) {
    int timeout = 60;
    const char *expect = NULL;
    if (argc == 5 && strcmp(argv[1], "--one") == 0 && strcmp(argv[3], "--alarm") == 0) {
        alarm((unsigned)atoi(argv[4]));   /* SIGALRM ends a hang */
        return fuzz_run_one(argv[2]);
    }
    char **files = NULL;
    size_t count = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) { timeout = atoi(argv[++i]); continue; }
        if (strcmp(argv[i], "--expect-fail") == 0 && i + 1 < argc) { expect = argv[++i]; continue; }
        struct stat st;
        if (stat(argv[i], &st) != 0) { fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno)); return 1; }
        if (S_ISDIR(st.st_mode)) {
            DIR *dir = opendir(argv[i]);
            struct dirent *e;
            while (dir != NULL && (e = readdir(dir)) != NULL) {
                if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0 ||
                    strcmp(e->d_name, "EXPECTED_FAILURES") == 0) continue;
                char *path = malloc(strlen(argv[i]) + strlen(e->d_name) + 2);
                sprintf(path, "%s/%s", argv[i], e->d_name);
                files = realloc(files, (count + 1) * sizeof *files);
                files[count++] = path;
            }
            if (dir) closedir(dir);
        } else {
            files = realloc(files, (count + 1) * sizeof *files);
            files[count++] = strdup(argv[i]);
        }
    }
    if (count) qsort(files, count, sizeof *files, fuzz_compare);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) { fprintf(stderr, "replay: cannot find this program\n"); return 1; }
    self[len] = '\0';
    size_t passed = 0, expected = 0, failed = 0, fixed = 0;
    for (size_t i = 0; i < count; i++) {
        const char *name = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
        int listed = fuzz_listed(expect, name);
        char why[256] = "";
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int ok = fuzz_spawn(self, files[i], timeout, why, sizeof why);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ok && !listed) { passed++; printf("ok        %s (%.0f ms)\n", files[i], ms); }
        else if (ok) { fixed++; printf("FIXED     %s: passes now; remove it from %s\n", files[i], expect); }
        else if (listed) { expected++; printf("expected  %s: %s (listed in %s until its fix lands)\n", files[i], why, expect); }
        else { failed++; printf("FAILED    %s: %s\n", files[i], why); }
        free(files[i]);
    }
    free(files);
    printf("replay: %zu passed, %zu failed, %zu failed as expected, %zu listed but passing\n",
           passed, failed, expected, fixed);
    return failed ? 1 : 0;
}
#endif /* FUZZ_REPLAY */

#endif /* DL_FUZZ_COMMON_H */
