#include "core/error.h"
#include "core/unlearning_methods.h"
#include "train/checkpoint.h"
#include "train/objectives/unlearning.h"
#include "train/parallelism.h"

namespace undo {

// RMU's retain target and NPO's reference are frozen copies of the model
// before unlearning, laid out as the run lays out the model (under dist.zero =
// 3 each rank copies only its slices, and each forward gathers unit by unit).
std::unique_ptr<Objective> make_unlearning_objective(const Config& cfg, Transformer& model, Parallelism& parallel) {
  const int T = cfg.model.seq_len;
  auto forget = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.forget_mix", cfg.data.forget_mix), "train", T);
  // The retain data of unlearning is the oracle's mix: everything but the forget domain.
  auto retain = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.oracle_mix", cfg.data.oracle_mix), "train", T);
  const auto& u = cfg.unlearn;
  std::unique_ptr<Objective> obj;
  if (u.method == "graddiff") {
    obj = std::make_unique<GradDiffObjective>(forget, retain, T, u.retain_coef);
  } else if (u.method == "maxent") {
    obj = std::make_unique<MaxEntObjective>(forget, retain, T, u.retain_coef);
  } else if (u.method == "rmu") {
    obj = std::make_unique<RmuObjective>(forget, retain, T, u, parallel.frozen_copy(model), uint64_t(cfg.run.seed));
  } else if (u.method == "npo") {
    obj = std::make_unique<NpoObjective>(forget, retain, T, u, parallel.frozen_copy(model));
  } else if (u.method == "simnpo") {
    obj = std::make_unique<SimNpoObjective>(forget, retain, T, u);
  } else if (u.method == "repnoise") {
    obj = std::make_unique<RepNoiseObjective>(forget, retain, T, u);
  }
  // The config's check admits only listed methods; one listed here but not built above is a bug.
  UNDO_CHECK(obj, "unlearning method '", u.method, "' is in core/unlearning_methods.h but not built here (",
             unlearning_method_names(), ")");
  if (u.sam_rho > 0) obj = std::make_unique<SamObjective>(std::move(obj), u.sam_rho);
  return obj;
}

}  // namespace undo
