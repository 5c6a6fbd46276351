// Graceful stop. Slurm sends SIGUSR1 (--signal) before a time limit and
// SIGTERM on preemption or scancel; a run must then write what it has and
// exit 75 within seconds, never needing SIGKILL. The handlers only set a
// flag. Long loops poll it at their safe points (between micro-batches,
// between evaluation batches, between cache rows) and stop there: the trainer
// checkpoints, a cache build keeps its finished rows.
#pragma once
#include <functional>
#include <stdexcept>

namespace undo {

// Installs the SIGTERM / SIGUSR1 handlers (idempotent); with `interrupt_too`,
// SIGINT sets the flag as well (a sweep runner, which passes a stop on to its
// jobs, rather than a stage, which a Ctrl-C may simply end).
void install_stop_handlers(bool interrupt_too = false);
// True once this process has received SIGTERM or SIGUSR1.
bool stop_signalled();
// Forgets a received signal (tests run several stops in one process).
void clear_stop_signal();
// Counts a safe point. Test-only fault injection: UNDO_FAULT_TERM_AT_POLL=N
// makes the process send itself SIGTERM at its N-th safe point (from 1), as
// Slurm's signal arriving in the middle of a loop would.
void count_safe_point();

// Called at a safe point; true means "stop here". In a job of several ranks
// it is a collective vote (every rank reaches the same polls in the same
// order), so that all ranks stop at the same point. An empty poll never stops.
using StopPoll = std::function<bool()>;

// Thrown from a safe point inside a loop that cannot return early (an
// evaluation, a cache build); the owner of the run catches it, saves its
// state and turns it into Preempted.
struct StopRequested : std::runtime_error {
  StopRequested() : std::runtime_error("stop requested") {}
};

// Throws StopRequested when `poll` says stop.
inline void stop_point(const StopPoll& poll) {
  if (poll && poll()) throw StopRequested();
}

}  // namespace undo
