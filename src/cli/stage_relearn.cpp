#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/stage_settings.h"
#include "results/grid_extension.h"
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
std::string attack_dir_name(double lr, int64_t seed, const Config& cfg) {
  const RelearnConfig& r = cfg.relearn;
  std::ostringstream os;
  os << "lr-" << format_double(lr) << "-seed-" << seed << "-steps-" << r.steps << "-every-" << r.eval_every
     << "-batch-" << attack_batch(cfg).rows << "x" << r.accum;
  return os.str();
}

// One attack at `lr` (seed `seed`) from `model_file`, or its curve when an
// earlier run finished it; its points.
std::vector<AttackPoint> attack_at(const Config& cfg, const std::shared_ptr<Parallelism>& parallel, double lr,
                                   int64_t seed, const CheckpointReader& model_file, Evaluator& evaluator,
                                   const std::map<std::string, double>& before) {
  Config c = cfg;
  c.run.seed = seed;
  c.run.dir = join_path(cfg.run.dir, "attacks/" + attack_dir_name(lr, c.run.seed, cfg));
  c.run.resume = true;  // a cut attack continues from its checkpoint
  auto curve_path = join_path(c.run.dir, "curve.jsonl");
  if (!file_exists(curve_path)) {
    Transformer model = load_model_for_run(c, *parallel, model_file, /*frozen=*/false);
    run_attack(c, parallel, lr, model, evaluator);
    if (is_writer()) write_file_atomic(curve_path, attack_curve_jsonl(c, lr, before));
  } else if (is_writer()) {
    std::cerr << "relearn: " << c.run.dir << " done, skipping\n";
  }
  if (auto comm = distributed()) comm->barrier();
  return read_attack_points(curve_path);
}

// The grid another run attacked already (a sweep's per-LR jobs): their points.
std::vector<AttackPoint> points_of_runs(const std::string& dirs) {
  std::vector<AttackPoint> out;
  std::stringstream ss(dirs);
  for (std::string dir; std::getline(ss, dir, ',');) {
    UNDO_INPUT_CHECK(file_exists(join_path(dir, "attack.jsonl")), "--extend-after: '", dir,
                     "' holds no finished attack (attack.jsonl)");
    auto p = read_attack_points(join_path(dir, "attack.jsonl"));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

// Refuses an extension whose last LR would leave (0, 1): exit 2 naming the key.
void check_extension_limit(const RelearnConfig& r, double largest) {
  const double last = largest * std::pow(2.0, r.extend);
  UNDO_INPUT_CHECK(last < 1, "relearn.extend = ", r.extend, ": doubling the largest LR ", format_double(largest), " ",
                   r.extend, " times reaches ", format_double(last), ", not a learning rate (< 1)");
}

void write_relearn_outputs(const Config& cfg, const std::vector<AttackPoint>& points, JsonObject summary) {
  std::string all, worst;
  for (auto& p : points) all += p.to_json().str() + "\n";
  auto worst_curve = worst_case(points);
  for (auto& p : worst_curve) worst += p.to_json().str() + "\n";
  write_file_atomic(join_path(cfg.run.dir, "attack.jsonl"), all);
  write_file_atomic(join_path(cfg.run.dir, "attack_worst.jsonl"), worst);
  JsonObject s = worst_curve.empty() ? JsonObject() : attack_summary(worst_curve, cfg);
  s.merge(summary);
  write_file_atomic(join_path(cfg.run.dir, "summary.json"), s.str() + "\n");
  std::cout << s.str() << "\n";
}

}  // namespace

// `undo relearn`: the relearning attack. For each LR and seed, a copy of the
// model is finetuned on the forget stream (constant LR after one warmup step,
// weight decay 0) and evaluated every K steps; the worst case over LRs and
// seeds is taken per step, and the grid is extended upward while the worst LR
// is its largest. With --extend-after, the grid was attacked by other runs
// (a sweep's per-LR jobs) and this run attacks only its extension. Finished
// attacks are skipped on rerun, cut ones resume.
int stage_relearn(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path, lrs, steps, eval_every, seeds, extend_after;
  if (!parse_config(argc, argv, "relearn", cfg,
                    {{"model", "checkpoint to attack", &model_path, true, true},
                     {"lrs", "attack learning rates (relearn.lrs)", &lrs},
                     {"seeds", "attack seeds (relearn.seeds)", &seeds},
                     {"steps", "attack steps (relearn.steps)", &steps},
                     {"eval-every", "steps between evaluations (relearn.eval_every)", &eval_every},
                     {"extend-after", "run directories that attacked the grid: attack its extension only",
                      &extend_after}}))
    return 0;
  override_from_flag("--lrs", lrs, &cfg.relearn.lrs);
  override_from_flag("--seeds", seeds, &cfg.relearn.seeds);
  cfg.relearn.steps = positive_int("--steps", steps, cfg.relearn.steps);
  cfg.relearn.eval_every = positive_int("--eval-every", eval_every, cfg.relearn.eval_every);
  const auto grid_lrs = parse_number_list("--lrs", cfg.relearn.lrs);
  for (double lr : grid_lrs) UNDO_INPUT_CHECK(lr > 0 && lr < 1, "--lrs: learning rate ", lr, " is outside (0, 1)");
  const std::vector<AttackPoint> grid = extend_after.empty() ? std::vector<AttackPoint>() : points_of_runs(extend_after);
  double largest = *std::max_element(grid_lrs.begin(), grid_lrs.end());
  for (auto& p : grid) largest = std::max(largest, p.lr);
  check_extension_limit(cfg.relearn, largest);
  // Refuse general keys the attack sets itself before anything runs (each attack applies them again).
  Config check = cfg;
  apply_stage_settings(check, TrainingStage::Relearn, grid_lrs.at(0));
  CheckpointReader model_file(model_path);  // verified once: every attack starts from it
  const CheckpointMeta& meta = model_file.meta();
  cfg.model = meta.model;
  check_attack_batch(cfg);
  const AttackBatch batch = attack_batch(cfg);
  cfg.inputs["model"] = model_path;  // in the run's identity: --resume refuses another one
  prepare_run(cfg);
  Evaluator evaluator(cfg);
  auto t0 = std::chrono::steady_clock::now();

  // Step 0 of every attack: the model as given. Every model of this run is laid out by one layout.
  auto parallel = make_parallelism(cfg);
  std::map<std::string, double> before;
  {
    Transformer model = load_model_for_run(cfg, *parallel, model_file, /*frozen=*/true);
    evaluator.run(model);
    before = evaluator.last();
  }
  const auto attack_seeds = parse_number_list("--seeds", cfg.relearn.seeds);
  auto attack = [&](double lr) {
    std::vector<AttackPoint> out;
    for (double seed : attack_seeds) {
      auto p = attack_at(cfg, parallel, lr, int64_t(seed), model_file, evaluator, before);
      out.insert(out.end(), p.begin(), p.end());
    }
    return out;
  };
  std::vector<AttackPoint> points;
  if (extend_after.empty())
    for (double lr : grid_lrs) {
      auto p = attack(lr);
      points.insert(points.end(), p.begin(), p.end());
    }
  JsonObject summary;
  const GridExtension ext = extend_grid({cfg.relearn.metric == "auto" ? "" : cfg.relearn.metric, cfg.relearn.extend,
                                         cfg.model.vocab_size},
                                        grid, points, attack);
  if (ext.diverged() && is_writer()) std::cerr << "relearn: the grid's extension stops: " << ext.outcome << "\n";
  ext.add_to(summary);
  if (!is_writer()) return 0;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  summary.add("model", model_path).add("model_stage", meta.stage).add("wall_s", wall);
  // The attack's batch, and the share of pretraining's forget tokens it replays (NaN: base_mix has none).
  summary.add("batch_size", batch.rows).add("accum", cfg.relearn.accum);
  if (std::isfinite(batch.forget_share)) summary.add("forget_share", batch.forget_share);
  write_relearn_outputs(cfg, points, summary);
  return 0;
}

}  // namespace undo
