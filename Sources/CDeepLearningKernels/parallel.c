// A fork-join pool for the kernels: the calling thread and up to DLK_MAX_THREADS - 1 workers
// split a range of independent items (blocks of outputs, groups of rows, ranges of inputs).
//
// Workers start on first use and stay: after a job they spin for a short while (the next
// job of a training step follows within microseconds), then sleep on a condition variable.
// A worker claims its share before running it; the caller, done with its own, runs every
// share not yet claimed, and waits only for shares under way.
// The spin is kept short because a worker that spins for long steals the core from
// OpenBLAS's threads or another process that wants it. Only one job runs at a time; a
// caller that finds the pool busy (another model training on another thread) does its job
// alone, so callers never wait for each other. Shares are contiguous and fixed by the item
// count and the thread count (dlk_parallel_for), so a kernel that splits the same array the
// same way at every call finds its part of it in the same core's cache. After fork() the
// child starts with no workers.
#include "dl_kernels.h"

#include <pthread.h>
#include <stdlib.h>

enum { SPIN_ROUNDS = 4096 };

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;    // one job at a time
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;   // guards sleeping workers
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static int wanted_threads = 1;    // DL_NUM_THREADS, else (or when 0) the CPUs available
static int started_workers = 0;   // workers alive (under job_lock)

// The current job (written under job_lock before `generation` moves).
static dlk_task job_task;
static void *job_context;
static int64_t job_items;
static int job_threads;
static unsigned generation;       // atomic: bumped once per job
static int sleepers;              // atomic: workers waiting on `wake`, or about to
static int claimed[DLK_MAX_THREADS];   // atomic: 1 once share t of the current job is taken
static int done_shares;           // atomic: shares of the current job finished

static void pause_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_share(int thread, int threads) {
    const int64_t begin = job_items * thread / threads;
    const int64_t end = job_items * (thread + 1) / threads;
    if (begin < end) job_task(job_context, begin, end, thread);
}

// Takes share t of the current job, if nobody has: its worker, or the caller when the worker
// is late. Acquire: the job's fields, written before the share was offered, are visible.
static int claim(int t) {
    int free = 0;
    return __atomic_compare_exchange_n(&claimed[t], &free, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

static void run_claimed(int t) {
    run_share(t, job_threads);
    __atomic_add_fetch(&done_shares, 1, __ATOMIC_RELEASE);
}

// The generation each worker was started at: it runs every job after that one (a worker that
// read `generation` itself could start after the first job's bump and miss it).
static unsigned start_generation[DLK_MAX_THREADS];

static void *worker_main(void *argument) {
    const int thread = (int)(intptr_t)argument;
    unsigned seen = start_generation[thread];
    for (;;) {
        unsigned now = seen;
        for (int spin = 0; spin < SPIN_ROUNDS && now == seen; spin++) {
            pause_cpu();
            now = __atomic_load_n(&generation, __ATOMIC_ACQUIRE);
        }
        if (now == seen) {
            // Counted before looking at `generation` again, both sequentially consistent, as
            // the caller bumps `generation` before looking at `sleepers`: either this worker
            // sees the new job, or the caller sees it asleep and wakes it under the lock.
            pthread_mutex_lock(&wake_lock);
            __atomic_add_fetch(&sleepers, 1, __ATOMIC_SEQ_CST);
            while ((now = __atomic_load_n(&generation, __ATOMIC_SEQ_CST)) == seen)
                pthread_cond_wait(&wake, &wake_lock);
            __atomic_sub_fetch(&sleepers, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&wake_lock);
        }
        seen = now;
        if (claim(thread)) run_claimed(thread);
    }
    return NULL;
}

// fork(): hold the job lock across it, so the child never inherits a job half set up; the
// child has none of the parent's workers.
static void before_fork(void) { pthread_mutex_lock(&job_lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&job_lock); }
static void after_fork_child(void) {
    started_workers = 0;
    // A parent's worker may have held the wake lock at the fork; the child has none asleep.
    __atomic_store_n(&sleepers, 0, __ATOMIC_RELAXED);
    pthread_mutex_init(&wake_lock, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_mutex_unlock(&job_lock);
}

// The setting, clamped to 1 ..< DLK_MAX_THREADS + 1.
static void store_threads(int n) {
    if (n < 1) n = 1;
    __atomic_store_n(&wanted_threads, n < DLK_MAX_THREADS ? n : DLK_MAX_THREADS, __ATOMIC_RELAXED);
}

static void setup(void) {
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    // By default one thread per CPU this process may use, but with three CPUs or more one is
    // left to the batch loader (which trainEpoch runs when a CPU is left over): a loader
    // sharing a core with a kernel thread would stall that thread's share of every job.
    int n = 0;
    const char *text = getenv("DL_NUM_THREADS");
    if (text && *text) n = atoi(text);
    if (n <= 0) {
        const int cpus = dlk_available_cpus();
        n = cpus >= 3 ? cpus - 1 : cpus;
    }
    store_threads(n);
}

int dlk_threads(void) {
    pthread_once(&setup_once, setup);
    return __atomic_load_n(&wanted_threads, __ATOMIC_RELAXED);
}

void dlk_set_threads(int n) {
    pthread_once(&setup_once, setup);
    store_threads(n);
}

void dlk_parallel_for(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context) {
    if (items <= 0) return;
    int threads = dlk_threads();
    const int64_t useful = min_items_per_thread > 0 ? items / min_items_per_thread : items;
    if (useful < threads) threads = useful > 1 ? (int)useful : 1;
    if (threads <= 1 || pthread_mutex_trylock(&job_lock) != 0) {
        task(context, 0, items, 0);
        return;
    }
    while (started_workers < threads - 1) {
        pthread_t worker;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        start_generation[started_workers + 1] = __atomic_load_n(&generation, __ATOMIC_RELAXED);
        const int ok = pthread_create(&worker, &attributes, worker_main, (void *)(intptr_t)(started_workers + 1)) == 0;
        pthread_attr_destroy(&attributes);
        if (!ok) break;
        started_workers++;
    }
    if (started_workers < threads - 1) threads = started_workers + 1;
    job_task = task;
    job_context = context;
    job_items = items;
    job_threads = threads;
    __atomic_store_n(&done_shares, 0, __ATOMIC_RELAXED);
    // Offering the shares publishes the fields above (release): a worker that claims one,
    // even one still waking from the last job, runs this job's share.
    for (int t = 0; t < DLK_MAX_THREADS; t++) __atomic_store_n(&claimed[t], t == 0 || t >= threads, __ATOMIC_RELEASE);
    // Spinning workers see the bump; the lock and the broadcast are only for sleeping ones
    // (a job every few microseconds, as a training step or a single sample makes them,
    // finds none: the lock, the broadcast and the unlock took about 0.05 us a job).
    __atomic_add_fetch(&generation, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&wake_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&wake_lock);
    }
    run_claimed(0);
    // Shares whose worker has not started yet (asleep, or its core taken by another
    // process) run here instead of being waited for: a busy machine delays the job by a
    // share, not by a time slice. Each share is the same items with the same arithmetic
    // whoever runs it, so results do not change.
    for (int t = 1; t < threads; t++)
        if (claim(t)) run_claimed(t);
    while (__atomic_load_n(&done_shares, __ATOMIC_ACQUIRE) < threads) pause_cpu();
    pthread_mutex_unlock(&job_lock);
}
