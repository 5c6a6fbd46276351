#include "core/unlearning_methods.h"

namespace undo {

const std::vector<UnlearningMethod>& unlearning_methods() {
  static const std::vector<UnlearningMethod> methods = {
      {"graddiff", "-CE(forget) + a CE(retain)"},
      {"maxent", "KL(uniform || p) on forget + a CE(retain)"},
      {"rmu", "MSE(h_l(forget), c u) + alpha MSE(h_l(retain), frozen h_l(retain))"},
      {"npo", "(2/beta) softplus(beta log(p/p_ref)(forget sequence)) + a CE(retain)"},
      {"simnpo", "(2/beta) softplus(beta mean log p(forget sequence) + gamma) + a CE(retain)"},
      {"repnoise", "MaxEnt + a CE(retain) + beta MMD(forget activations, N(0, I)) - alpha log(1 + logit-lens CE)"},
  };
  return methods;
}

bool is_unlearning_method(const std::string& name) {
  for (auto& m : unlearning_methods())
    if (name == m.name) return true;
  return false;
}

std::string unlearning_method_names(const std::string& separator) {
  std::string out;
  for (auto& m : unlearning_methods()) out += (out.empty() ? "" : separator) + m.name;
  return out;
}

}  // namespace undo
