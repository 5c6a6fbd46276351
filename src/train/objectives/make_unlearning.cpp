#include "core/error.h"
#include "core/unlearning_methods.h"
#include "distributed/communicator.h"
#include "distributed/zero3.h"
#include "train/checkpoint.h"
#include "train/objectives/unlearning.h"

namespace undo {

namespace {

// A frozen copy of the model before unlearning: RMU's retain target, NPO's
// reference. dist.zero = 3 shards it too (each rank copies only its slices,
// and each forward gathers it unit by unit).
Transformer frozen_copy(const Config& cfg, Transformer& model) {
  if (cfg.dist.zero == 3) return frozen_sharded_copy(model, distributed());
  Transformer frozen(model->cfg);
  frozen->to(model->parameters()[0].device());
  torch::NoGradGuard no_grad;
  auto src = model->named_parameters();
  for (auto& p : frozen->named_parameters()) p.value().copy_(src[p.key()]);
  return frozen;
}

}  // namespace

std::unique_ptr<Objective> make_unlearning_objective(const Config& cfg, Transformer& model) {
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
    obj = std::make_unique<RmuObjective>(forget, retain, T, u, frozen_copy(cfg, model), uint64_t(cfg.run.seed));
  } else if (u.method == "npo") {
    obj = std::make_unique<NpoObjective>(forget, retain, T, u, frozen_copy(cfg, model));
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
