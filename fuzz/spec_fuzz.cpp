// Sweep specs (`undo sweep --spec`): any text after a [sweep] header that
// names an empty config, read by read_sweep_spec. An accepted spec must hold
// what the planner relies on: a grid within the plan limit, integer seeds in
// range, and nothing empty that it iterates over.
#include <exception>

#include "core/error.h"
#include "fuzz_util.h"
#include "sweep/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& config = undo::fuzz::scratch_file("", ".config.ini");  // every key at its default
  const std::string& spec = undo::fuzz::scratch_file("[sweep]\nconfig = " + config + "\n" +
                                                         undo::fuzz::text(data, size),
                                                     ".spec.ini");
  try {
    undo::SweepSpec s = undo::read_sweep_spec(spec);
    UNDO_CHECK(undo::planned_job_count(s) <= undo::kMaxPlannedJobs, "an accepted grid is over the plan limit");
    UNDO_CHECK(!s.methods.empty() && !s.alphas.empty() && !s.seeds.empty() && !s.attack_lrs.empty() &&
                   !s.signals.empty(),
               "an accepted spec has an empty grid axis");
    for (int64_t seed : s.seeds) UNDO_CHECK(seed >= 0 && seed <= (int64_t(1) << 53), "a seed out of range");
  } catch (const undo::InputError&) {
  }
  return 0;
}
