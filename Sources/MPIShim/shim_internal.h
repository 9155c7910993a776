// Shared between the shim's files; not part of the Swift-facing API.
#ifndef A2Q_MPI_INTERNAL_H
#define A2Q_MPI_INTERNAL_H
#include <mpi.h>

/// The thread level MPI_Init_thread provided (MPI_THREAD_SERIALIZED is requested).
extern int a2q_mpi_thread_level;

/// Answers every pending roll-call question (see a2q_mpi_roll_call).
void a2q_answer_roll_call(void);
/// One idle turn of a waiting loop: answers roll calls, then sleeps 50 µs.
void a2q_idle_poll(void);

// --- The ordered sum (ordered_sum.c) ---------------------------------------------------------
enum OrderedSumPhase { ORDERED_SUM_DONE, ORDERED_SUM_EXCHANGE, ORDERED_SUM_GATHER, ORDERED_SUM_LIBRARY, ORDERED_SUM_FAILED };

/// One sum over ranks in flight. Its buffers grow and are kept for the next sum (no allocation
/// per step once sizes repeat); zero-initialise before the first use.
typedef struct {
    void *data;
    int count;
    MPI_Datatype type;
    int rank, size;
    enum OrderedSumPhase phase;
    MPI_Request request;
    void *scratch;            // R received copies of this rank's chunk
    size_t scratch_capacity;
    int *counts;              // send counts/displacements, receive counts/displacements (4·R)
    size_t counts_capacity;
} OrderedSum;

/// The sum order in effect (A2Q_SUM_ORDER_FIXED by default).
extern int a2q_mpi_sum_order;
/// Duplicates MPI_COMM_WORLD for the exchanges and the gathers (collective; after MPI_Init).
int a2q_ordered_sum_init_comms(void);
void a2q_ordered_sum_free_comms(void);
/// Starts the sum of `count` elements of `type` (MPI_FLOAT or MPI_DOUBLE) over ranks, in place.
int a2q_ordered_sum_start(OrderedSum *sum, void *data, int count, MPI_Datatype type);
/// Advances a started sum without waiting; `*done` = 1 once the result is in `data`.
int a2q_ordered_sum_test(OrderedSum *sum, int *done);
/// Waits for a started sum (answering roll calls); A2Q_MPI_TIMEOUT after `timeout_seconds` (> 0).
int a2q_ordered_sum_wait(OrderedSum *sum, double timeout_seconds);
/// Waits for a request by polling (answering roll calls), so that a dead or stalled peer
/// turns into A2Q_MPI_TIMEOUT instead of a hang; timeout <= 0 waits forever.
int a2q_wait_with_deadline(MPI_Request *request, double timeout_seconds);
/// Blocks until the progress thread (if any) makes no MPI call: every started sum finished,
/// or the thread stopped on an error. Every MPI call of the calling thread goes after it.
void a2q_progress_thread_quiesce(void);
/// Stops and joins the progress thread once its sums finished (before MPI_Finalize).
void a2q_progress_thread_stop(void);
/// Stops the progress thread at once, unfinished sums or not, waiting up to `seconds` for it
/// to leave the MPI library (before MPI_Abort).
void a2q_progress_thread_halt(double seconds);

#endif
