#include <chrono>
#include <iostream>

#include "cli/stage_result.h"
#include "cli/stages.h"
#include "core/fs.h"
#include "core/json.h"
#include "train/stage_models.h"
#include "train/trainer.h"

namespace undo {

int stage_pretrain(int argc, const char* const* argv) {
  Config cfg;
  if (!parse_config(argc, argv, "pretrain", cfg)) return 0;
  prepare_run(cfg);
  auto mix_text = cfg.pretrain.target == "base" ? cfg.data.base_mix : cfg.data.oracle_mix;
  auto mix = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data." + cfg.pretrain.target + "_mix", mix_text),
                                         "train", cfg.model.seq_len);
  Evaluator evaluator(cfg);
  auto parallel = make_parallelism(cfg);  // the run's layout, for its model and its training
  Transformer model = initialised_model_for_run(cfg, *parallel);
  CrossEntropyObjective objective(mix, cfg.model.seq_len);
  auto t0 = std::chrono::steady_clock::now();
  Trainer trainer(cfg, "pretrain-" + cfg.pretrain.target, model, objective, &evaluator, parallel);
  TrainResult r = trainer.run();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  write_stage_result(cfg, "pretrain-" + cfg.pretrain.target, model, r, wall);
  return 0;
}

}  // namespace undo
