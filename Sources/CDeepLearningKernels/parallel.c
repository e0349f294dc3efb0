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
//
// A job costs a few transfers of cache lines between cores (0.05-0.15 us each on these
// VMs, more than a small job's arithmetic), so each shared word sits where the fewest
// transfers happen: the job and its generation share one line, which the workers read;
// each worker's claim and its "done" have lines of their own, the claim written by the
// worker alone unless the caller finds it late, so claiming costs no transfer at all. A
// claim or a "done" holds the generation of the job it belongs to, so nothing has to be
// reset between jobs. (An empty job on two threads took 0.45-0.55 us with one claim and
// "done" word for all, reset by every job; see bench/README.md.)
#include "dl_kernels.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

enum { SPIN_ROUNDS = 4096, LINE = 64 };

static pthread_mutex_t job_lock = PTHREAD_MUTEX_INITIALIZER;    // one job at a time
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;   // guards sleeping workers
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static int wanted_threads = 1;    // DL_NUM_THREADS, else (or when 0) the CPUs available
static int started_workers = 0;   // workers alive (under job_lock)

// The current job, written under job_lock before `generation` moves (release), in the line
// the workers spin on: seeing the new generation brings the job with it.
static struct {
    _Alignas(LINE) unsigned generation;   // atomic: bumped once per job
    dlk_task task;
    void *context;
    int64_t items;
    int threads;
} job;

// Per worker: the generation of the last job whose share it (or the caller, for it) took,
// and of the last it finished. Atomic; each in a line of its own.
static struct { _Alignas(LINE) unsigned generation; } claimed[DLK_MAX_THREADS], done[DLK_MAX_THREADS];

static struct { _Alignas(LINE) int count; } sleepers;   // atomic: workers waiting on `wake`, or about to

static void pause_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_share(int thread, int threads) {
    const int64_t begin = job.items * thread / threads;
    const int64_t end = job.items * (thread + 1) / threads;
    if (begin < end) job.task(job.context, begin, end, thread);
}

// Takes share t of job g, if nobody has: its worker, or the caller when the worker is late.
// Only a claim older than g is replaced: a worker that saw job g - 1 late, after its caller
// took the share, the next job began and took the share from it in advance (a worker the
// job does not use), claims nothing. (Generations are compared as differences, so they may
// wrap around.)
static int claim(int t, unsigned g) {
    unsigned last = __atomic_load_n(&claimed[t].generation, __ATOMIC_RELAXED);
    return (int)(g - last) > 0 &&
           __atomic_compare_exchange_n(&claimed[t].generation, &last, g, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
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
            now = __atomic_load_n(&job.generation, __ATOMIC_ACQUIRE);
        }
        if (now == seen) {
            // Counted before looking at `generation` again, both sequentially consistent, as
            // the caller looks at `sleepers` after a sequentially consistent fence that
            // follows its bump of `generation`: either this worker sees the new job, or the
            // caller sees it asleep and wakes it under the lock.
            pthread_mutex_lock(&wake_lock);
            __atomic_add_fetch(&sleepers.count, 1, __ATOMIC_SEQ_CST);
            while ((now = __atomic_load_n(&job.generation, __ATOMIC_SEQ_CST)) == seen)
                pthread_cond_wait(&wake, &wake_lock);
            __atomic_sub_fetch(&sleepers.count, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock(&wake_lock);
        }
        seen = now;
        // The job `now` names may be over (its caller took this share) and the next one
        // under way; the claim names the generation, so a stale one claims nothing.
        if (claim(thread, now)) {
            run_share(thread, job.threads);
            __atomic_store_n(&done[thread].generation, now, __ATOMIC_RELEASE);
        }
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
    __atomic_store_n(&sleepers.count, 0, __ATOMIC_RELAXED);
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

// Wakes the workers asleep on `wake`.
static void wake_sleepers(void) {
    pthread_mutex_lock(&wake_lock);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&wake_lock);
}

// Whether a short job that finds the workers asleep comes within BURST_NS of the last one
// that did (under job_lock): the caller is back at work, and workers woken now will spin
// between its next jobs. Alone, after a pause (a prediction now and then, or a single CNN
// sample whose one large product comes every 140 us, longer than the workers' spin), it
// runs without them.
enum { BURST_NS = 100000 };
static int64_t last_found_asleep = INT64_MIN / 2;

static int in_burst(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    const int64_t now = (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    const int burst = now - last_found_asleep < BURST_NS;
    last_found_asleep = now;
    return burst;
}

static int parallel_for(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context, int wake) {
    if (items <= 0) return DLK_JOIN_SERIAL;
    int threads = dlk_threads();
    const int64_t useful = min_items_per_thread > 0 ? items / min_items_per_thread : items;
    if (useful < threads) threads = useful > 1 ? (int)useful : 1;
    if (threads <= 1 || pthread_mutex_trylock(&job_lock) != 0) {
        task(context, 0, items, 0);
        return DLK_JOIN_SERIAL;
    }
    while (started_workers < threads - 1) {
        pthread_t worker;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        const unsigned now = __atomic_load_n(&job.generation, __ATOMIC_RELAXED);
        start_generation[started_workers + 1] = now;
        __atomic_store_n(&claimed[started_workers + 1].generation, now, __ATOMIC_RELAXED);
        __atomic_store_n(&done[started_workers + 1].generation, now, __ATOMIC_RELAXED);
        const int ok = pthread_create(&worker, &attributes, worker_main, (void *)(intptr_t)(started_workers + 1)) == 0;
        pthread_attr_destroy(&attributes);
        if (!ok) break;
        started_workers++;
    }
    if (started_workers < threads - 1) threads = started_workers + 1;
    const unsigned g = __atomic_load_n(&job.generation, __ATOMIC_RELAXED) + 1;
    // Workers this job does not use find their share taken (before the job is offered).
    for (int t = threads; t <= started_workers; t++) __atomic_store_n(&claimed[t].generation, g, __ATOMIC_RELAXED);
    job.task = task;
    job.context = context;
    job.items = items;
    job.threads = threads;
    // A worker already asleep is woken now, so that a large job after a pause is shared.
    // Otherwise the bump is a plain release store: spinning workers see it, and the caller
    // does not wait for it to reach them (a sequentially consistent bump waited about 0.1 us
    // for the workers' copies of the line to go). A worker that fell asleep meanwhile is
    // found after the caller's own share (its share then runs here).
    // A short job (`dlk_parallel_for_awake`) wakes sleeping workers only in a burst.
    const int asleep = __atomic_load_n(&sleepers.count, __ATOMIC_RELAXED) > 0 && (wake || in_burst());
    __atomic_store_n(&job.generation, g, __ATOMIC_RELEASE);
    if (asleep) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        wake_sleepers();
    }
    run_share(0, threads);
    if (wake && !asleep) {
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(&sleepers.count, __ATOMIC_SEQ_CST) > 0) wake_sleepers();
    }
    // Shares whose worker has not started yet (asleep, or its core taken by another
    // process) run here instead of being waited for: a busy machine delays the job by a
    // share, not by a time slice. Each share is the same items with the same arithmetic
    // whoever runs it, so results do not change. A finished share is not looked at twice.
    int join = DLK_JOIN_WORKERS_FIRST;
    for (int t = 1; t < threads; t++) {
        if (__atomic_load_n(&done[t].generation, __ATOMIC_ACQUIRE) == g) continue;
        if (claim(t, g)) {
            run_share(t, threads);
            join = DLK_JOIN_TOOK_OVER;
            continue;
        }
        if (join == DLK_JOIN_WORKERS_FIRST) join = DLK_JOIN_CALLER_WAITED;
        while (__atomic_load_n(&done[t].generation, __ATOMIC_ACQUIRE) != g) pause_cpu();
    }
    pthread_mutex_unlock(&job_lock);
    return join;
}

int dlk_parallel_for(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context) {
    return parallel_for(items, min_items_per_thread, task, context, 1);
}

int dlk_parallel_for_awake(int64_t items, int64_t min_items_per_thread, dlk_task task, void *context) {
    return parallel_for(items, min_items_per_thread, task, context, 0);
}
