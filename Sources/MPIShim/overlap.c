#define _GNU_SOURCE  // pthread_timedjoin_np
// Non-blocking sums for the overlapped all-reduce: gradient buckets are started while the
// backward pass goes on and finished before the optimizer step.
//
// Over TCP a started nonblocking collective moves only while some thread is inside the MPI library
// (Open MPI has no asynchronous progress for the tcp BTL): each round of libnbc's schedule
// needs a call that sees the previous round's messages arrive. Two ways to give it those calls:
//
//   * between layers: the main thread calls a2q_mpi_progress() after each layer's backward;
//   * a progress thread: the main thread hands buckets over (a2q_mpi_iallreduce_sum_f32) and
//     makes no MPI call until it has waited for them; the thread starts them in the order they
//     came (every rank starts the same collectives in the same order) and tests them every
//     `poll_interval_ns` until they finish. MPI_THREAD_SERIALIZED is enough, because the two
//     threads never call MPI at the same time: the main thread's other MPI calls start with
//     a2q_progress_thread_quiesce().
//
// Each bucket is an ordered sum (ordered_sum.c): an exchange, a2q's own sum in rank order, a
// gather. Its bits do not depend on the bucket boundaries, so fused, bucketed and both progress
// modes give the same result. A bucket's gather starts only after every earlier bucket's gather
// has started (advance_in_order): every rank then starts its gathers in bucket order.
#include "a2q_mpi.h"
#include "shim_internal.h"
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <time.h>

enum { MAX_PENDING = 256 };
enum BucketState { FREE, QUEUED, ACTIVE, DONE };

typedef struct {
    float *data;
    int count;
    double timeout;
    double deadline;
    OrderedSum sum;  // its buffers stay with the slot, reused by the next step's bucket
    int rc;
    enum BucketState state;
} Bucket;

static Bucket buckets[MAX_PENDING];

/// Advances the started buckets `order[0..<count]` (in the order they were started) without
/// waiting; writes 1 into `finished[i]` for the ones complete. A bucket still in its exchange
/// blocks the later buckets' exchanges from completing into a gather, so gathers start in bucket
/// order on every rank. Checks each bucket's watchdog.
static int advance_in_order(const int *order, int count, int *finished) {
    int blocked = 0;
    for (int i = 0; i < count; i++) {
        Bucket *b = &buckets[order[i]];
        finished[i] = 0;
        if (blocked && b->sum.phase == ORDERED_SUM_EXCHANGE) continue;
        int rc = a2q_ordered_sum_test(&b->sum, &finished[i]);
        if (rc != MPI_SUCCESS) return rc;
        if (b->sum.phase == ORDERED_SUM_EXCHANGE) blocked = 1;
        if (!finished[i] && b->deadline > 0 && MPI_Wtime() > b->deadline) return A2Q_MPI_TIMEOUT;
    }
    return MPI_SUCCESS;
}

// --- Between layers (no progress thread): the started buckets in start order -----------------
static int started[MAX_PENDING];
static int started_count = 0;

/// Advances the started buckets; the finished ones leave the list as DONE.
static int advance_started(void) {
    int finished[MAX_PENDING];
    int rc = advance_in_order(started, started_count, finished);
    if (rc != MPI_SUCCESS) return rc;
    int kept = 0;
    for (int i = 0; i < started_count; i++) {
        if (finished[i]) buckets[started[i]].state = DONE;
        else started[kept++] = started[i];
    }
    started_count = kept;
    return MPI_SUCCESS;
}

// --- Progress thread state (guarded by `lock`) ----------------------------------------------
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_ready = PTHREAD_COND_INITIALIZER;  // main → thread: buckets queued, or stop
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;   // thread → main: a bucket finished, or failure
static int use_thread = 0;
static int thread_running = 0;
static int stop_requested = 0;
static pthread_t thread;
static int queue[MAX_PENDING];  // FIFO of QUEUED bucket indices, in submission order
static int queue_head = 0, queue_length = 0;
static int unfinished = 0;      // QUEUED + ACTIVE buckets
static int failure = MPI_SUCCESS;  // the first error; the thread then stops calling MPI
static int in_mpi = 0;          // the thread is between MPI calls with the lock released

/// How long the progress thread sleeps between tests of its started sums. 1 Gbit/s drains a
/// 64 KiB socket buffer in ~0.5 ms, so 50 µs keeps the link busy at a few % of a core.
static const long poll_interval_ns = 50000;
/// How much longer than the watchdog the main thread waits for the progress thread's verdict.
static const int main_thread_grace_seconds = 5;

static void *progress_thread_main(void *unused) {
    (void)unused;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // sleep 50 µs, not 50 µs + the default 50 µs slack
    int active[MAX_PENDING];
    int active_count = 0;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!stop_requested && (failure != MPI_SUCCESS || (queue_length == 0 && active_count == 0))) {
            pthread_cond_wait(&work_ready, &lock);
        }
        if (stop_requested) break;
        // Start what was queued, in the order it came.
        int to_start[MAX_PENDING];
        int starting = 0;
        while (queue_length > 0) {
            int index = queue[queue_head];
            queue_head = (queue_head + 1) % MAX_PENDING;
            queue_length--;
            buckets[index].state = ACTIVE;
            to_start[starting++] = index;
        }
        in_mpi = 1;
        pthread_mutex_unlock(&lock);

        int rc = MPI_SUCCESS;
        for (int i = 0; i < starting && rc == MPI_SUCCESS; i++) {
            Bucket *b = &buckets[to_start[i]];
            rc = a2q_ordered_sum_start(&b->sum, b->data, b->count, MPI_FLOAT);
            b->deadline = b->timeout > 0 ? MPI_Wtime() + b->timeout : 0;
            active[active_count++] = to_start[i];
        }
        int done[MAX_PENDING];
        int finished[MAX_PENDING];
        int finished_count = 0;
        if (rc == MPI_SUCCESS) rc = advance_in_order(active, active_count, done);
        for (int i = 0; i < active_count && rc == MPI_SUCCESS; i++) {
            if (done[i]) finished[finished_count++] = i;
        }
        if (rc == MPI_SUCCESS) a2q_answer_roll_call();

        pthread_mutex_lock(&lock);
        in_mpi = 0;
        for (int k = finished_count - 1; k >= 0; k--) {  // from the back: earlier positions stay valid
            int position = finished[k];
            buckets[active[position]].state = DONE;
            unfinished--;
            for (int j = position; j + 1 < active_count; j++) active[j] = active[j + 1];
            active_count--;
        }
        if (rc != MPI_SUCCESS) failure = rc;
        if (finished_count > 0 || failure != MPI_SUCCESS) pthread_cond_broadcast(&work_done);
        if (failure == MPI_SUCCESS && active_count > 0 && queue_length == 0) {
            pthread_mutex_unlock(&lock);
            struct timespec pause = {0, poll_interval_ns};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&lock);
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

int32_t a2q_mpi_set_progress_thread(int32_t enable) {
    a2q_progress_thread_quiesce();  // no bucket in flight changes hands between the two modes
    pthread_mutex_lock(&lock);
    int ok = 1;
    if (enable && a2q_mpi_thread_level >= MPI_THREAD_SERIALIZED) {
        if (!thread_running) {
            stop_requested = 0;
            thread_running = pthread_create(&thread, NULL, progress_thread_main, NULL) == 0;
        }
        use_thread = thread_running;
        ok = thread_running;
    } else {
        use_thread = 0;
        ok = !enable;
    }
    pthread_mutex_unlock(&lock);
    return ok;
}

void a2q_progress_thread_quiesce(void) {
    // Between layers: finish the started buckets first, so that every rank starts its next
    // exchange and gather after all of theirs (their deadlines still apply; after an error the
    // caller's own sum reports it).
    long spins = 0;
    while (!use_thread && started_count > 0) {
        if (advance_started() != MPI_SUCCESS) break;
        if (started_count > 0 && ++spins > 1000) a2q_idle_poll();
    }
    pthread_mutex_lock(&lock);
    while (thread_running && unfinished > 0 && failure == MPI_SUCCESS) pthread_cond_wait(&work_done, &lock);
    // After a failure the thread parks at its next look at the state; let it leave MPI first
    // (MPI calls return promptly, so a second is plenty).
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1;
    while (thread_running && in_mpi) {
        if (pthread_cond_timedwait(&work_done, &lock, &until) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&lock);
}

void a2q_progress_thread_stop(void) {
    pthread_mutex_lock(&lock);
    if (!thread_running) { pthread_mutex_unlock(&lock); return; }
    while (unfinished > 0 && failure == MPI_SUCCESS) pthread_cond_wait(&work_done, &lock);
    stop_requested = 1;
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&lock);
    thread_running = 0;
    use_thread = 0;
    pthread_mutex_unlock(&lock);
}

void a2q_progress_thread_halt(double seconds) {
    pthread_mutex_lock(&lock);
    if (!thread_running) { pthread_mutex_unlock(&lock); return; }
    stop_requested = 1;
    pthread_cond_broadcast(&work_ready);
    pthread_mutex_unlock(&lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)seconds;
    until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    if (pthread_timedjoin_np(thread, NULL, &until) == 0) {
        pthread_mutex_lock(&lock);
        thread_running = 0;
        use_thread = 0;
        pthread_mutex_unlock(&lock);
    }
}

int a2q_mpi_iallreduce_sum_f32(float *data, int64_t count, double timeout_seconds, int32_t *handle) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    pthread_mutex_lock(&lock);
    int index = -1;
    for (int i = 0; i < MAX_PENDING; i++) {
        if (buckets[i].state == FREE) { index = i; break; }
    }
    if (index < 0) { pthread_mutex_unlock(&lock); return MPI_ERR_PENDING; }
    Bucket *b = &buckets[index];
    b->data = data;
    b->count = (int)count;
    b->timeout = timeout_seconds;
    b->rc = MPI_SUCCESS;
    int rc = MPI_SUCCESS;
    if (use_thread) {
        if (failure != MPI_SUCCESS) { rc = failure; }
        else {
            b->state = QUEUED;
            queue[(queue_head + queue_length) % MAX_PENDING] = index;
            queue_length++;
            unfinished++;
            pthread_cond_signal(&work_ready);
        }
    } else {
        rc = a2q_ordered_sum_start(&b->sum, data, (int)count, MPI_FLOAT);
        b->deadline = timeout_seconds > 0 ? MPI_Wtime() + timeout_seconds : 0;
        if (rc == MPI_SUCCESS) {
            b->state = ACTIVE;
            started[started_count++] = index;
        }
    }
    pthread_mutex_unlock(&lock);
    if (rc == MPI_SUCCESS) *handle = index;
    return rc;
}

int a2q_mpi_progress(void) {
    if (use_thread) return MPI_SUCCESS;  // the thread does it (and the main thread must not call MPI)
    int rc = advance_started();
    if (rc != MPI_SUCCESS) return rc;
    a2q_answer_roll_call();
    return MPI_SUCCESS;
}

int a2q_mpi_wait_handle(int32_t handle, double timeout_seconds) {
    if (handle < 0 || handle >= MAX_PENDING) return MPI_ERR_REQUEST;
    pthread_mutex_lock(&lock);
    Bucket *b = &buckets[handle];
    int rc;
    if (b->state == FREE) {
        rc = MPI_ERR_REQUEST;
    } else if (b->state == QUEUED || (b->state == ACTIVE && use_thread) || b->state == DONE) {
        // The thread's bucket: wait for it to finish or for the thread to fail (the thread keeps
        // the watchdog: its deadline is set when it starts the sum).
        // Its own deadline, a little later, guards against the thread itself not reporting.
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)timeout_seconds + main_thread_grace_seconds;
        while (b->state != DONE && failure == MPI_SUCCESS) {
            if (timeout_seconds <= 0) { pthread_cond_wait(&work_done, &lock); continue; }
            if (pthread_cond_timedwait(&work_done, &lock, &until) == ETIMEDOUT && b->state != DONE && failure == MPI_SUCCESS) {
                failure = A2Q_MPI_TIMEOUT;  // the thread parks at its next look at the state
            }
        }
        rc = b->state == DONE ? b->rc : failure;
    } else {
        // Between layers: advance every started bucket in order until this one is done (the
        // earlier ones' gathers must start first). The watchdog runs from the bucket's start.
        pthread_mutex_unlock(&lock);
        long spins = 0;
        rc = MPI_SUCCESS;
        while (rc == MPI_SUCCESS && b->state != DONE) {
            rc = advance_started();
            if (rc == MPI_SUCCESS && b->state != DONE && ++spins > 1000) a2q_idle_poll();
        }
        pthread_mutex_lock(&lock);
    }
    if (rc == MPI_SUCCESS || b->state == DONE) b->state = FREE;
    pthread_mutex_unlock(&lock);
    return rc;
}
