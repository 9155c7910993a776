// The sum over ranks whose order a2q defines, not the MPI library.
//
// MPI_Allreduce's result depends on the algorithm Open MPI picks (recursive doubling, ring,
// Rabenseifner, a hierarchy across hosts), which depends on the message size, the rank count,
// the transport and the tuning tables: each picks another association of the R terms, and float
// addition is not associative. So the same gradients summed fused or in buckets, over shared
// memory or TCP, could differ in the last bits.
//
// Here the arithmetic happens in a2q's code and MPI only moves bytes:
//
//   1. exchange (MPI_Ialltoallv): the buffer is cut into R chunks, chunk k = [k·n/R, (k+1)·n/R);
//      rank r receives every rank's copy of chunk r, in rank order;
//   2. sum: rank r adds them element by element in rank order, ((x₀ + x₁) + x₂) + …, in double
//      (for float data) and rounds once to the data's type;
//   3. gather (MPI_Iallgatherv, in place): every rank receives every summed chunk.
//
// Element i's result is therefore a fixed function of the R values at element i — independent of
// the bucket it travels in, of n, of the transport and of the MPI library's algorithm choice, and
// (IEEE 754 double addition, no fused multiply-add involved) of the CPU. Bytes moved per rank:
// 2·(R−1)/R·n elements, the same as a bandwidth-optimal ring all-reduce.
//
// Nonblocking collectives must start in the same order on every rank. A bucket's gather starts
// when its exchange is seen complete, which can interleave differently with the next buckets'
// exchanges on different ranks, so exchanges and gathers run on two duplicates of
// MPI_COMM_WORLD: on each, every rank starts its collectives in bucket order.
#include "a2q_mpi.h"
#include "shim_internal.h"
#include <stdlib.h>
#include <string.h>

static MPI_Comm exchange_comm = MPI_COMM_NULL;
static MPI_Comm gather_comm = MPI_COMM_NULL;
int a2q_mpi_sum_order = A2Q_SUM_ORDER_FIXED;

int a2q_ordered_sum_init_comms(void) {
    if (exchange_comm != MPI_COMM_NULL) return MPI_SUCCESS;  // MPI initialised once per process
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &exchange_comm);
    if (rc != MPI_SUCCESS) return rc;
    if ((rc = MPI_Comm_dup(MPI_COMM_WORLD, &gather_comm)) != MPI_SUCCESS) return rc;
    MPI_Comm_set_errhandler(exchange_comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(gather_comm, MPI_ERRORS_RETURN);
    return MPI_SUCCESS;
}

void a2q_ordered_sum_free_comms(void) {
    if (exchange_comm != MPI_COMM_NULL) MPI_Comm_free(&exchange_comm);
    if (gather_comm != MPI_COMM_NULL) MPI_Comm_free(&gather_comm);
}

/// Grows `*buffer` to at least `bytes` (never shrinks), so steady-state steps allocate nothing.
static int reserve(void **buffer, size_t *capacity, size_t bytes) {
    if (bytes <= *capacity) return 1;
    void *grown = realloc(*buffer, bytes);
    if (!grown) return 0;
    *buffer = grown;
    *capacity = bytes;
    return 1;
}

static int element_size(MPI_Datatype type) { return type == MPI_DOUBLE ? 8 : 4; }

/// The start of chunk k of n elements cut R ways.
static int64_t chunk_start(int64_t n, int size, int k) { return (n * (int64_t)k) / size; }

int a2q_ordered_sum_start(OrderedSum *s, void *data, int count, MPI_Datatype type) {
    s->data = data;
    s->count = count;
    s->type = type;
    s->request = MPI_REQUEST_NULL;
    s->rank = 0;
    s->size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &s->size);
    if (s->size == 1 || count == 0) { s->phase = ORDERED_SUM_DONE; return MPI_SUCCESS; }
    if (a2q_mpi_sum_order == A2Q_SUM_ORDER_LIBRARY) {
        s->phase = ORDERED_SUM_LIBRARY;
        return MPI_Iallreduce(MPI_IN_PLACE, data, count, type, MPI_SUM, exchange_comm, &s->request);
    }
    int R = s->size, r = s->rank, width = element_size(type);
    if (!reserve((void **)&s->counts, &s->counts_capacity, sizeof(int) * 4 * (size_t)R)) return MPI_ERR_NO_MEM;
    int *send_counts = s->counts, *send_displs = send_counts + R;
    int *receive_counts = send_displs + R, *receive_displs = receive_counts + R;
    int64_t mine = chunk_start(count, R, r + 1) - chunk_start(count, R, r);
    for (int k = 0; k < R; k++) {
        send_displs[k] = (int)chunk_start(count, R, k);
        send_counts[k] = (int)(chunk_start(count, R, k + 1) - send_displs[k]);
        receive_counts[k] = (int)mine;
        receive_displs[k] = (int)(mine * k);
    }
    if (!reserve(&s->scratch, &s->scratch_capacity, (size_t)(mine * R) * (size_t)width + 1)) return MPI_ERR_NO_MEM;
    s->phase = ORDERED_SUM_EXCHANGE;
    return MPI_Ialltoallv(data, send_counts, send_displs, type, s->scratch, receive_counts, receive_displs,
                          type, exchange_comm, &s->request);
}

/// Rank r's chunk: the R received copies summed in rank order, written over its own chunk.
static void sum_own_chunk(OrderedSum *s) {
    int R = s->size;
    int64_t begin = chunk_start(s->count, R, s->rank);
    int64_t m = chunk_start(s->count, R, s->rank + 1) - begin;
    if (s->type == MPI_DOUBLE) {
        const double *x = (const double *)s->scratch;
        double *out = (double *)s->data + begin;
        for (int64_t i = 0; i < m; i++) {
            double acc = x[i];
            for (int k = 1; k < R; k++) acc += x[(int64_t)k * m + i];
            out[i] = acc;
        }
    } else {
        const float *x = (const float *)s->scratch;
        float *out = (float *)s->data + begin;
        for (int64_t i = 0; i < m; i++) {
            double acc = (double)x[i];
            for (int k = 1; k < R; k++) acc += (double)x[(int64_t)k * m + i];
            out[i] = (float)acc;
        }
    }
}

int a2q_ordered_sum_test(OrderedSum *s, int *done) {
    *done = 0;
    if (s->phase == ORDERED_SUM_FAILED) return MPI_ERR_OTHER;
    for (;;) {
        if (s->phase == ORDERED_SUM_DONE) { *done = 1; return MPI_SUCCESS; }
        int finished = 0;
        int rc = MPI_Test(&s->request, &finished, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return rc;
        if (!finished) return MPI_SUCCESS;
        if (s->phase != ORDERED_SUM_EXCHANGE) { s->phase = ORDERED_SUM_DONE; continue; }
        sum_own_chunk(s);
        int *chunk_counts = s->counts, *chunk_displs = s->counts + s->size;  // the send layout
        s->phase = ORDERED_SUM_GATHER;
        rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, s->data, chunk_counts, chunk_displs,
                             s->type, gather_comm, &s->request);
        if (rc != MPI_SUCCESS) { s->phase = ORDERED_SUM_FAILED; return rc; }
    }
}

int a2q_ordered_sum_wait(OrderedSum *s, double timeout_seconds) {
    double deadline = timeout_seconds > 0 ? MPI_Wtime() + timeout_seconds : 0;
    long spins = 0;
    for (;;) {
        int done = 0;
        int rc = a2q_ordered_sum_test(s, &done);
        if (rc != MPI_SUCCESS) return rc;
        if (done) return MPI_SUCCESS;
        if (deadline > 0 && MPI_Wtime() > deadline) return A2Q_MPI_TIMEOUT;
        if (++spins > 1000) a2q_idle_poll();  // back off once the sum is clearly not immediate
    }
}

int32_t a2q_mpi_set_sum_order(int32_t order) {
    if (order != A2Q_SUM_ORDER_FIXED && order != A2Q_SUM_ORDER_LIBRARY) return 0;
    a2q_progress_thread_quiesce();
    a2q_mpi_sum_order = order;
    return 1;
}
