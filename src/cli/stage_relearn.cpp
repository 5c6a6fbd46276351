#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/stage_settings.h"
#include "train/checkpoint.h"
#include "train/relearn.h"
#include "train/stage_models.h"
#include "train/trainer.h"

namespace undo {

namespace {

void override_from_flag(const std::string& flag, const std::string& value, std::string* key) {
  if (value.empty()) return;
  parse_number_list(flag, value);
  *key = value;
}

int positive_int(const std::string& flag, const std::string& text, int fallback) {
  return text.empty() ? fallback : int(parse_integer(flag, text, 1, std::numeric_limits<int>::max()));
}

// The attack's own run directory names everything that shapes its curve, so
// that a rerun with another budget does not take an old curve for its own.
std::string attack_dir_name(double lr, int64_t seed, const RelearnConfig& r) {
  std::ostringstream os;
  os << "lr-" << format_double(lr) << "-seed-" << seed << "-steps-" << r.steps << "-every-" << r.eval_every;
  return os.str();
}

}  // namespace

// `undo relearn`: the relearning attack. For each LR and seed, a copy of the
// model is finetuned on the forget stream (constant LR after one warmup step,
// weight decay 0) and evaluated every K steps; the worst case over LRs and
// seeds is taken per step. Finished attacks are skipped on rerun, cut ones resume.
int stage_relearn(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path, lrs, steps, eval_every, seeds;
  if (!parse_config(argc, argv, "relearn", cfg,
                    {{"model", "checkpoint to attack", &model_path, true, true},
                     {"lrs", "attack learning rates (relearn.lrs)", &lrs},
                     {"seeds", "attack seeds (relearn.seeds)", &seeds},
                     {"steps", "attack steps (relearn.steps)", &steps},
                     {"eval-every", "steps between evaluations (relearn.eval_every)", &eval_every}}))
    return 0;
  override_from_flag("--lrs", lrs, &cfg.relearn.lrs);
  override_from_flag("--seeds", seeds, &cfg.relearn.seeds);
  cfg.relearn.steps = positive_int("--steps", steps, cfg.relearn.steps);
  cfg.relearn.eval_every = positive_int("--eval-every", eval_every, cfg.relearn.eval_every);
  for (double lr : parse_number_list("--lrs", cfg.relearn.lrs))
    UNDO_INPUT_CHECK(lr > 0 && lr < 1, "--lrs: learning rate ", lr, " is outside (0, 1)");
  // Refuse general keys the attack sets itself before anything runs (each attack applies them again).
  Config check = cfg;
  apply_stage_settings(check, TrainingStage::Relearn, parse_number_list("--lrs", cfg.relearn.lrs).at(0));
  CheckpointReader model_file(model_path);  // verified once: every attack starts from it
  const CheckpointMeta& meta = model_file.meta();
  cfg.model = meta.model;
  prepare_run(cfg);
  Evaluator evaluator(cfg);
  auto t0 = std::chrono::steady_clock::now();

  // Step 0 of every attack: the model as given.
  std::map<std::string, double> before;
  {
    Transformer model = load_model_for_run(cfg, model_file, /*frozen=*/true);
    evaluator.run(model);
    before = evaluator.last();
  }
  std::vector<AttackPoint> points;
  for (double seed : parse_number_list("--seeds", cfg.relearn.seeds)) {
    for (double lr : parse_number_list("--lrs", cfg.relearn.lrs)) {
      Config c = cfg;
      c.run.seed = int64_t(seed);
      c.run.dir = join_path(cfg.run.dir, "attacks/" + attack_dir_name(lr, c.run.seed, cfg.relearn));
      c.run.resume = true;  // a cut attack continues from its checkpoint
      auto curve_path = join_path(c.run.dir, "curve.jsonl");
      if (!file_exists(curve_path)) {
        Transformer model = load_model_for_run(c, model_file, /*frozen=*/false);  // sharded as read under dist.zero = 3
        run_attack(c, lr, model, evaluator);
        if (is_writer()) write_file_atomic(curve_path, attack_curve_jsonl(c, lr, before));
      } else if (is_writer()) {
        std::cerr << "relearn: " << c.run.dir << " done, skipping\n";
      }
      if (auto comm = distributed()) comm->barrier();
      for (auto& p : read_attack_points(curve_path)) points.push_back(p);
    }
  }
  if (!is_writer()) return 0;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::string all, worst;
  for (auto& p : points) all += p.to_json().str() + "\n";
  auto worst_curve = worst_case(points);
  for (auto& p : worst_curve) worst += p.to_json().str() + "\n";
  write_file_atomic(join_path(cfg.run.dir, "attack.jsonl"), all);
  write_file_atomic(join_path(cfg.run.dir, "attack_worst.jsonl"), worst);
  auto summary = attack_summary(worst_curve, cfg);
  summary.add("model", model_path).add("model_stage", meta.stage).add("wall_s", wall);
  write_file_atomic(join_path(cfg.run.dir, "summary.json"), summary.str() + "\n");
  std::cout << summary.str() << "\n";
  return 0;
}

}  // namespace undo
