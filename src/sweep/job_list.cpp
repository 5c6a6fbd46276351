#include "sweep/job_list.h"

#include <set>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/owned_output.h"

namespace undo {

void write_job_list(const Plan& plan) {
  std::string text;
  for (auto& j : plan.jobs) {
    text += j.id + "\t" + j.name + "\t" + j.kind + "\t";
    for (size_t i = 0; i < j.deps.size(); ++i) text += (i ? "," : "") + j.deps[i];
    text += "\n";
  }
  write_output_file(join_path(plan.out, "jobs.tsv"), text);
}

Plan read_job_list(const std::string& out) {
  Plan plan;
  plan.out = out;
  const std::string path = join_path(out, "jobs.tsv");
  if (!file_exists(path)) return plan;
  std::istringstream in(read_file(path));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::vector<std::string> f;
    std::istringstream cells(line);
    for (std::string c; std::getline(cells, c, '\t');) f.push_back(c);
    if (line.back() == '\t') f.push_back("");
    Job j;
    UNDO_INPUT_CHECK(f.size() == 4, path, ":", n, ": ", f.size(), " fields, expected id, name, kind, deps");
    j.id = f[0], j.name = f[1], j.kind = f[2];
    // Names and ids become paths under OUT/jobs: nothing that leaves it.
    for (auto& part : {j.id, j.name})
      UNDO_INPUT_CHECK(!part.empty() && part.find('/') == std::string::npos && part != "." && part != "..", path, ":",
                       n, ": '", printable(part), "' is not a job name");
    j.deps = split_list(f[3]);
    j.dir = out + "/jobs/" + j.name + "-" + j.id;  // as make_plan names it
    plan.jobs.push_back(std::move(j));
  }
  std::set<std::string> ids;
  for (auto& j : plan.jobs) ids.insert(j.id);
  for (auto& j : plan.jobs)
    for (auto& d : j.deps)
      UNDO_INPUT_CHECK(ids.count(d), path, ": job ", j.name, " depends on ", printable(d), ", which is not listed");
  return plan;
}

}  // namespace undo
