#include "a2q_mpi.h"
#include <mpi.h>
#include <limits.h>
#include <string.h>
#include <time.h>

static const int64_t chunk_limit = INT_MAX / 8;

int a2q_mpi_init(int32_t *rank, int32_t *size) {
    int flag = 0, rc = MPI_Initialized(&flag);
    if (rc != MPI_SUCCESS) return rc;
    if (!flag) {
        int provided = 0;
        rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return rc;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
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

int a2q_mpi_finalize(void) { return MPI_Finalize(); }
void a2q_mpi_abort(int32_t code) { MPI_Abort(MPI_COMM_WORLD, code); }
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

/// Waits for a non-blocking request, polling, so that a dead or stalled peer
/// turns into A2Q_MPI_TIMEOUT instead of a hang.
static int wait_with_deadline(MPI_Request *request, double timeout_seconds) {
    if (timeout_seconds <= 0) return MPI_Wait(request, MPI_STATUS_IGNORE);
    double deadline = MPI_Wtime() + timeout_seconds;
    int done = 0;
    long spins = 0;
    for (;;) {
        int rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        if (done) return MPI_SUCCESS;
        if (MPI_Wtime() > deadline) return A2Q_MPI_TIMEOUT;
        if (++spins > 1000) {  // back off once the collective is clearly not immediate
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
        }
    }
}

int a2q_mpi_barrier(double timeout_seconds) {
    MPI_Request request;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &request);
    if (rc != MPI_SUCCESS) return rc;
    return wait_with_deadline(&request, timeout_seconds);
}

static int allreduce(void *data, int64_t count, MPI_Datatype type, int64_t element_size,
                     MPI_Op op, double timeout_seconds) {
    char *bytes = (char *)data;
    for (int64_t offset = 0; offset < count; offset += chunk_limit) {
        int64_t n = count - offset < chunk_limit ? count - offset : chunk_limit;
        MPI_Request request;
        int rc = MPI_Iallreduce(MPI_IN_PLACE, bytes + offset * element_size, (int)n, type, op,
                                MPI_COMM_WORLD, &request);
        if (rc != MPI_SUCCESS) return rc;
        if ((rc = wait_with_deadline(&request, timeout_seconds)) != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int a2q_mpi_allreduce_sum_f32(float *data, int64_t count, double timeout_seconds) {
    return allreduce(data, count, MPI_FLOAT, 4, MPI_SUM, timeout_seconds);
}

int a2q_mpi_allreduce_sum_f64(double *data, int64_t count, double timeout_seconds) {
    return allreduce(data, count, MPI_DOUBLE, 8, MPI_SUM, timeout_seconds);
}

int a2q_mpi_allreduce_minmax_i64(int64_t *data, int64_t count, int32_t op, double timeout_seconds) {
    return allreduce(data, count, MPI_INT64_T, 8, op == 0 ? MPI_MIN : MPI_MAX, timeout_seconds);
}

int a2q_mpi_broadcast_bytes(void *data, int64_t count, int32_t root, double timeout_seconds) {
    char *bytes = (char *)data;
    for (int64_t offset = 0; offset < count; offset += chunk_limit) {
        int64_t n = count - offset < chunk_limit ? count - offset : chunk_limit;
        MPI_Request request;
        int rc = MPI_Ibcast(bytes + offset, (int)n, MPI_BYTE, root, MPI_COMM_WORLD, &request);
        if (rc != MPI_SUCCESS) return rc;
        if ((rc = wait_with_deadline(&request, timeout_seconds)) != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}
