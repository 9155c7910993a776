// Shared between the shim's files; not part of the Swift-facing API.
#ifndef A2Q_MPI_INTERNAL_H
#define A2Q_MPI_INTERNAL_H
#include <mpi.h>

/// The thread level MPI_Init_thread provided (MPI_THREAD_SERIALIZED is requested).
extern int a2q_mpi_thread_level;

/// Answers every pending roll-call question (see a2q_mpi_roll_call).
void a2q_answer_roll_call(void);
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
