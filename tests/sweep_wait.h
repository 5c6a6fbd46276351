// For the tests that run a sweep on Slurm: waiting until its jobs settle.
// A header of its own: test_util is also linked into the data-tool tests,
// which have no sweep.
#pragma once
#include <unistd.h>

#include "sweep/plan.h"
#include "sweep/state.h"

namespace undo::test {

// Until every job of `plan` is done, failed or blocked (tasks of one array
// end in any order), or `seconds` have passed.
inline void wait_for_sweep_to_settle(const Plan& plan, double seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    bool settled = true;
    for (auto& j : plan.jobs) {
      auto state = job_status(plan, j).state;
      settled = settled && (state == JobState::Done || state == JobState::Failed || state == JobState::Blocked);
    }
    if (settled) return;
    ::usleep(100000);
  }
}

}  // namespace undo::test
