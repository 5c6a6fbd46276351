// The unlearning methods undo implements, in one list: the config key
// unlearn.method, a sweep spec's `methods` and [unlearn.<method>] sections,
// the CLI's help and the objective factory all read it, so that a method is
// added in one place (and train/objectives/make_unlearning.cpp, which builds
// it; a listed method it cannot build is an internal error, caught by a test).
#pragma once
#include <string>
#include <vector>

namespace undo {

struct UnlearningMethod {
  const char* name;
  const char* loss;  // one line: what it minimises (undo-spec.md; docs/METHODS.md)
};

const std::vector<UnlearningMethod>& unlearning_methods();
bool is_unlearning_method(const std::string& name);
// "graddiff | maxent | ..." (or joined by `separator`).
std::string unlearning_method_names(const std::string& separator = " | ");

}  // namespace undo
