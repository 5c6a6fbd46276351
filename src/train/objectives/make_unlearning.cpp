#include "core/error.h"
#include "distributed/communicator.h"
#include "distributed/zero3.h"
#include "train/checkpoint.h"
#include "train/objectives/unlearning.h"

namespace undo {

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
  } else {
    // The frozen model the retain term reads: a copy of the model before
    // unlearning. dist.zero = 3 shards it too (each rank copies only its
    // slices, and each forward gathers it unit by unit).
    Transformer frozen{nullptr};
    if (cfg.dist.zero == 3) {
      frozen = frozen_sharded_copy(model, distributed());
    } else {
      frozen = Transformer(model->cfg);
      frozen->to(model->parameters()[0].device());
      torch::NoGradGuard no_grad;
      auto src = model->named_parameters();
      for (auto& p : frozen->named_parameters()) p.value().copy_(src[p.key()]);
    }
    obj = std::make_unique<RmuObjective>(forget, retain, T, u, frozen, uint64_t(cfg.run.seed));
  }
  if (u.sam_rho > 0) obj = std::make_unique<SamObjective>(std::move(obj), u.sam_rho);
  return obj;
}

}  // namespace undo
