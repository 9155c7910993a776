// A thin C shim over OpenMPI for Swift: only <stdint.h> types cross the boundary.
// Swift cannot import MPI_COMM_WORLD, MPI_FLOAT or MPI_IN_PLACE (cast-of-address macros).
// Every function works on MPI_COMM_WORLD (the sums on two duplicates of it, ordered_sum.c) and
// returns an MPI error code (0 = success)
// because the communicator's error handler is set to MPI_ERRORS_RETURN.
#ifndef A2Q_MPI_H
#define A2Q_MPI_H
#include <stdint.h>

/// Returned by the *_timeout collectives when the deadline passed before completion.
#define A2Q_MPI_TIMEOUT (-1000)

int a2q_mpi_init(int32_t *rank, int32_t *size);
int a2q_mpi_is_initialized(void);
int a2q_mpi_finalize(void);
void a2q_mpi_abort(int32_t code);
void a2q_mpi_error_string(int32_t code, char *buffer, int32_t capacity);
void a2q_mpi_library_version(char *buffer, int32_t capacity);
double a2q_mpi_wtime(void);

int a2q_mpi_barrier(double timeout_seconds);

/// How the float sums over ranks associate their R terms (ordered_sum.c).
/// FIXED (the default): element by element in rank order, ((x0 + x1) + x2) + ..., computed by
/// a2q after an all-to-all exchange: the same bits whatever the buffer is cut into, the transport
/// and the MPI library's algorithm choice. LIBRARY: MPI_Allreduce's own order, which can differ
/// in the last bits between bucket sizes, rank counts and transports.
#define A2Q_SUM_ORDER_FIXED 0
#define A2Q_SUM_ORDER_LIBRARY 1
/// Sets the order for the sums started from now on; returns 0 for an unknown value.
int32_t a2q_mpi_set_sum_order(int32_t order);

/// In-place sum over ranks; counts above INT_MAX are chunked. timeout <= 0 waits forever.
int a2q_mpi_allreduce_sum_f32(float *data, int64_t count, double timeout_seconds);
int a2q_mpi_allreduce_sum_f64(double *data, int64_t count, double timeout_seconds);
/// In-place element-wise min (op = 0) or max (op = 1) of int64 values.
int a2q_mpi_allreduce_minmax_i64(int64_t *data, int64_t count, int32_t op, double timeout_seconds);
int a2q_mpi_broadcast_bytes(void *data, int64_t count, int32_t root, double timeout_seconds);

/// Roll call after a watchdog timeout: asks every other rank (point to point) whether it is
/// there, waiting up to `wait_seconds`; ranks blocked in a collective answer while they poll.
/// Writes the ranks that did not answer into `missing` (up to `capacity`) and returns how many.
int32_t a2q_mpi_roll_call(double wait_seconds, int32_t *missing, int32_t capacity);
/// Every rank's MPI processor name (host), `width` bytes per rank, NUL-padded (collective).
int a2q_mpi_processor_names(char *names, int32_t width);

/// The overlapped all-reduce (overlap.c). `enable` = 1: a progress thread starts and advances
/// the sums while the caller computes (needs MPI_THREAD_SERIALIZED); 0: they advance only in
/// a2q_mpi_progress and a2q_mpi_wait_handle. Returns 1 when the requested mode is in effect.
int32_t a2q_mpi_set_progress_thread(int32_t enable);
/// Starts an in-place float sum over ranks (count <= INT_MAX) and returns a handle at once;
/// the watchdog `timeout_seconds` runs from the moment the sum is started.
int a2q_mpi_iallreduce_sum_f32(float *data, int64_t count, double timeout_seconds, int32_t *handle);
/// Advances every started sum (MPI_Test) without waiting and answers roll calls; nothing when
/// the progress thread does it.
int a2q_mpi_progress(void);
/// Waits for a started sum under the watchdog and frees its handle.
int a2q_mpi_wait_handle(int32_t handle, double timeout_seconds);

#endif
