#include <chrono>
#include <iostream>

#include "cli/stage_result.h"
#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/stage_settings.h"
#include "train/objectives/unlearning.h"
#include "train/stage_models.h"
#include "train/trainer.h"

namespace undo {

int stage_unlearn(int argc, const char* const* argv) {
  Config cfg;
  std::string base_path;
  if (!parse_config(argc, argv, "unlearn", cfg, {{"base", "checkpoint of the model to unlearn", &base_path, true, true}}))
    return 0;
  CheckpointReader base_file(base_path);  // verified once
  cfg.model = base_file.meta().model;  // the model's shape is the checkpoint's
  apply_stage_settings(cfg, TrainingStage::Unlearn);  // the spec's optimiser, the unlearn.* budget
  cfg.inputs["base"] = base_path;  // in the run's identity: --resume refuses another one
  prepare_run(cfg);
  auto parallel = make_parallelism(cfg);  // the run's layout, for its models and its training
  Transformer model = load_model_for_run(cfg, *parallel, base_file, /*frozen=*/false);
  auto objective = make_unlearning_objective(cfg, model, *parallel);
  Evaluator evaluator(cfg);
  std::string stage = "unlearn-" + cfg.unlearn.method + (cfg.unlearn.sam_rho > 0 ? "-sam" : "");
  auto t0 = std::chrono::steady_clock::now();
  Trainer trainer(cfg, stage, model, *objective, &evaluator, parallel);
  TrainResult r = trainer.run();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  write_stage_result(cfg, stage, model, r, wall, {{"base", base_path}}, &base_file.meta());
  return 0;
}

}  // namespace undo
