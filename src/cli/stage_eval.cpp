#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/owned_output.h"
#include "data/prepared_check.h"
#include "eval/evaluator.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace undo {

int stage_eval(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path;
  if (!parse_config(argc, argv, "eval", cfg, {{"model", "checkpoint to evaluate", &model_path, true, true}})) return 0;
  configure_threads(cfg.run);
  select_compute_device(cfg.run.device, 0);
  CheckpointMeta meta;
  Transformer model = load_model(model_path, &meta);
  check_prepared_data(cfg.data.dir);
  check_model_fits_data(meta, model_path, cfg.data.dir);
  model->to(compute_device());
  cfg.model = meta.model;  // windows and vocab follow the checkpoint
  Evaluator evaluator(cfg);
  JsonObject result;
  result.add("model", model_path).add("stage", meta.stage).add("step", meta.step).merge(evaluator.run(model));
  // The result goes to stdout; to RUN_DIR/eval.json only where the command
  // names a run directory (it used to land in the config's runs/tiny of the
  // current directory: an evaluation has no run of its own).
  if (auto it = cfg.origin.find("run.dir"); it != cfg.origin.end() && it->second == "command line") write_output_file(join_path(cfg.run.dir, "eval.json"), result.str() + "\n");
  std::cout << result.str() << "\n";
  return 0;
}

}  // namespace undo
