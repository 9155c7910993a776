#include "a2q_mpi.h"
#include "shim_internal.h"
#include <limits.h>
#include <string.h>
#include <time.h>

static const int64_t chunk_limit = INT_MAX / 8;
int a2q_mpi_thread_level = MPI_THREAD_SINGLE;

int a2q_mpi_init(int32_t *rank, int32_t *size) {
    int flag = 0, rc = MPI_Initialized(&flag);
    if (rc != MPI_SUCCESS) return rc;
    if (!flag) {
        // Serialized: the overlapped all-reduce's progress thread makes MPI calls while the
        // main thread computes, never at the same time as it (a2q_progress_thread_quiesce).
        int provided = 0;
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) return rc;
        a2q_mpi_thread_level = provided;
    } else {
        MPI_Query_thread(&a2q_mpi_thread_level);
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if ((rc = a2q_ordered_sum_init_comms()) != MPI_SUCCESS) return rc;
    int r = 0, s = 1;
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &r)) != MPI_SUCCESS) return rc;
    if ((rc = MPI_Comm_size(MPI_COMM_WORLD, &s)) != MPI_SUCCESS) return rc;
    *rank = r; *size = s;
    return MPI_SUCCESS;
}

int a2q_mpi_is_initialized(void) {
    int flag = 0, finalized = 0;
    MPI_Initialized(&flag);
    MPI_Finalized(&finalized);
    return flag && !finalized;
}

int a2q_mpi_finalize(void) {
    a2q_progress_thread_stop();
    a2q_ordered_sum_free_comms();
    return MPI_Finalize();
}
void a2q_mpi_abort(int32_t code) {
    a2q_progress_thread_halt(1.0);
    MPI_Abort(MPI_COMM_WORLD, code);
}
double a2q_mpi_wtime(void) { return MPI_Wtime(); }

void a2q_mpi_error_string(int32_t code, char *buffer, int32_t capacity) {
    if (capacity <= 0) return;
    if (code == A2Q_MPI_TIMEOUT) {
        strncpy(buffer, "collective did not complete before the watchdog timeout", (size_t)capacity - 1);
        buffer[capacity - 1] = 0;
        return;
    }
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
    text[length < MPI_MAX_ERROR_STRING ? length : MPI_MAX_ERROR_STRING - 1] = 0;
    strncpy(buffer, text, (size_t)capacity - 1);
    buffer[capacity - 1] = 0;
}

void a2q_mpi_library_version(char *buffer, int32_t capacity) {
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(text, &length);
    text[length < MPI_MAX_LIBRARY_VERSION_STRING ? length : MPI_MAX_LIBRARY_VERSION_STRING - 1] = 0;
    if (capacity <= 0) return;
    strncpy(buffer, text, (size_t)capacity - 1);
    buffer[capacity - 1] = 0;
}

// Roll call: a rank whose watchdog fired asks every other rank, point to point, whether it
// is still there. Ranks waiting in a collective answer while they poll, so the ones that do
// not answer are the ones that died or stalled.
enum { PING_TAG = 0x2a51, PONG_TAG = 0x2a52 };

/// Answers every pending roll-call question (a 1-byte eager send per question).
void a2q_answer_roll_call(void) {
    for (;;) {
        int flag = 0;
        MPI_Status status;
        if (MPI_Iprobe(MPI_ANY_SOURCE, PING_TAG, MPI_COMM_WORLD, &flag, &status) != MPI_SUCCESS || !flag) return;
        char byte = 0;
        if (MPI_Recv(&byte, 1, MPI_CHAR, status.MPI_SOURCE, PING_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS) return;
        MPI_Request reply;
        if (MPI_Isend(&byte, 1, MPI_CHAR, status.MPI_SOURCE, PONG_TAG, MPI_COMM_WORLD, &reply) == MPI_SUCCESS) {
            MPI_Request_free(&reply);
        }
    }
}

int a2q_wait_with_deadline(MPI_Request *request, double timeout_seconds) {
    if (timeout_seconds <= 0) return MPI_Wait(request, MPI_STATUS_IGNORE);
    double deadline = MPI_Wtime() + timeout_seconds;
    int done = 0;
    long spins = 0;
    for (;;) {
        int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        if (done) return MPI_SUCCESS;
        if (MPI_Wtime() > deadline) return A2Q_MPI_TIMEOUT;
        if (++spins > 1000) a2q_idle_poll();  // back off once the collective is clearly not immediate
    }
}

void a2q_idle_poll(void) {
    a2q_answer_roll_call();
    struct timespec pause = {0, 50000};
    nanosleep(&pause, NULL);
}

int32_t a2q_mpi_roll_call(double wait_seconds, int32_t *missing, int32_t capacity) {
    a2q_progress_thread_quiesce();
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    static char question = 1;
    static char answers[1024];  // static: a late answer after the return must land somewhere valid
    MPI_Request replies[1024];
    int answered[1024];
    int peers = size < 1024 ? size : 1024;
    for (int r = 0; r < peers; r++) {
        answered[r] = (r == rank);
        replies[r] = MPI_REQUEST_NULL;
        if (r == rank) continue;
        MPI_Request ask;
        if (MPI_Isend(&question, 1, MPI_CHAR, r, PING_TAG, MPI_COMM_WORLD, &ask) == MPI_SUCCESS) MPI_Request_free(&ask);
        MPI_Irecv(&answers[r], 1, MPI_CHAR, r, PONG_TAG, MPI_COMM_WORLD, &replies[r]);
    }
    double deadline = MPI_Wtime() + wait_seconds;
    int pending = peers - 1;
    while (pending > 0 && MPI_Wtime() < deadline) {
        a2q_answer_roll_call();
        for (int r = 0; r < peers; r++) {
            if (answered[r] || replies[r] == MPI_REQUEST_NULL) continue;
            int done = 0;
            if (MPI_Test(&replies[r], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) { answered[r] = 1; pending--; }
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    int32_t count = 0;
    for (int r = 0; r < peers; r++) {
        if (answered[r]) continue;
        if (count < capacity) missing[count] = r;
        count++;
    }
    return count;
}

int a2q_mpi_processor_names(char *names, int32_t width) {
    char own[MPI_MAX_PROCESSOR_NAME];
    int length = 0;
    memset(own, 0, sizeof own);
    MPI_Get_processor_name(own, &length);
    char row[256];
    memset(row, 0, sizeof row);
    int w = width < (int32_t)sizeof row ? width : (int32_t)sizeof row;
    strncpy(row, own, (size_t)w - 1);
    return MPI_Allgather(row, w, MPI_CHAR, names, w, MPI_CHAR, MPI_COMM_WORLD);
}

int a2q_mpi_barrier(double timeout_seconds) {
    a2q_progress_thread_quiesce();
    MPI_Request request;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &request);
    if (rc != MPI_SUCCESS) return rc;
    return a2q_wait_with_deadline(&request, timeout_seconds);
}

/// The blocking sums: the ordered sum (ordered_sum.c) on chunks of at most chunk_limit elements.
static int sum_over_ranks(void *data, int64_t count, MPI_Datatype type, int64_t element_size,
                          double timeout_seconds) {
    static OrderedSum sum;  // its buffers are kept from call to call
    // After a failure or timeout its request may still be in flight, writing into its scratch:
    // never reuse it (callers abort the job on any error).
    static int failed = 0;
    if (failed) return MPI_ERR_OTHER;
    a2q_progress_thread_quiesce();
    char *bytes = (char *)data;
    for (int64_t offset = 0; offset < count; offset += chunk_limit) {
        int64_t n = count - offset < chunk_limit ? count - offset : chunk_limit;
        int rc = a2q_ordered_sum_start(&sum, bytes + offset * element_size, (int)n, type);
        if (rc == MPI_SUCCESS) rc = a2q_ordered_sum_wait(&sum, timeout_seconds);
        if (rc != MPI_SUCCESS) { failed = 1; return rc; }
    }
    return MPI_SUCCESS;
}

int a2q_mpi_allreduce_sum_f32(float *data, int64_t count, double timeout_seconds) {
    return sum_over_ranks(data, count, MPI_FLOAT, 4, timeout_seconds);
}

int a2q_mpi_allreduce_sum_f64(double *data, int64_t count, double timeout_seconds) {
    return sum_over_ranks(data, count, MPI_DOUBLE, 8, timeout_seconds);
}

/// Min and max are exact in any order: MPI's own all-reduce.
static int allreduce(void *data, int64_t count, MPI_Datatype type, int64_t element_size,
                     MPI_Op op, double timeout_seconds) {
    a2q_progress_thread_quiesce();
    char *bytes = (char *)data;
    for (int64_t offset = 0; offset < count; offset += chunk_limit) {
        int64_t n = count - offset < chunk_limit ? count - offset : chunk_limit;
        MPI_Request request;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, bytes + offset * element_size, (int)n, type, op,
                                MPI_COMM_WORLD, &request);
        if (rc != MPI_SUCCESS) return rc;
        if ((rc = a2q_wait_with_deadline(&request, timeout_seconds)) != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int a2q_mpi_allreduce_minmax_i64(int64_t *data, int64_t count, int32_t op, double timeout_seconds) {
    return allreduce(data, count, MPI_INT64_T, 8, op == 0 ? MPI_MIN : MPI_MAX, timeout_seconds);
}

int a2q_mpi_broadcast_bytes(void *data, int64_t count, int32_t root, double timeout_seconds) {
    a2q_progress_thread_quiesce();
    char *bytes = (char *)data;
    for (int64_t offset = 0; offset < count; offset += chunk_limit) {
        int64_t n = count - offset < chunk_limit ? count - offset : chunk_limit;
        MPI_Request request;
        int rc = MPI_Ibcast(bytes + offset, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &request);
        if (rc != MPI_SUCCESS) return rc;
        if ((rc = a2q_wait_with_deadline(&request, timeout_seconds)) != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}
