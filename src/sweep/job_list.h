// OUT/jobs.tsv: a sweep's jobs (id, name, kind, dependencies) as its runner
// planned them, written beside plan.txt so that readers without the spec
// (`undo report OUT` and its dashboard) know every job and find its state in
// its run directory. One line per job: id, name, kind, deps (comma-separated).
#pragma once
#include <string>

#include "sweep/plan.h"

namespace undo {

void write_job_list(const Plan& plan);
// A Plan holding only OUT's jobs (no spec): enough for job_status. Throws
// InputError naming the file and line of a malformed entry; an OUT without
// jobs.tsv gives no jobs.
Plan read_job_list(const std::string& out);

}  // namespace undo
