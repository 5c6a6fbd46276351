#include "train/relearn.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"
#include "core/stage_settings.h"
#include "data/shard.h"
#include "distributed/launch.h"
#include "train/trainer.h"

namespace undo {

std::shared_ptr<StreamMix> attack_stream(const Config& cfg) {
  return std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.forget_mix", cfg.data.forget_mix), "train",
                                     cfg.model.seq_len);
}

void check_attack_batch(const Config& cfg) {
  // Before the ranks meet: the launcher's environment says how many there will be.
  const int64_t rows = int64_t(attack_batch(cfg).rows) * cfg.relearn.accum * std::max(1, detect_launch().world);
  uint64_t windows = 0;
  for (auto& [stream, weight] : parse_mix("data.forget_mix", cfg.data.forget_mix))
    windows += Shard(join_path(cfg.data.dir, stream + ".train.bin")).size() / uint64_t(cfg.model.seq_len + 1);
  UNDO_INPUT_CHECK(uint64_t(rows) <= windows, "relearn.batch_size = ", cfg.relearn.batch_size, ": a step of ", rows,
                   " sequences (batch x relearn.accum x ranks) is more than the forget data holds (", windows,
                   " windows of ", cfg.model.seq_len, " tokens in ", cfg.data.forget_mix, ")");
}

void run_attack(const Config& base, std::shared_ptr<Parallelism> parallel, double lr, Transformer& model,
                Evaluator& evaluator) {
  Config cfg = base;
  apply_stage_settings(cfg, TrainingStage::Relearn, lr);  // relearn.* budget, the spec's attack optimiser
  CrossEntropyObjective attack(attack_stream(cfg), cfg.model.seq_len);
  Trainer(cfg, "relearn", model, attack, &evaluator, std::move(parallel)).run();
}

std::string attack_curve_jsonl(const Config& cfg, double lr, const std::map<std::string, double>& before) {
  std::string out;
  AttackPoint p0;
  p0.lr = lr;
  p0.seed = cfg.run.seed;
  p0.metrics = before;
  out += p0.to_json().str() + "\n";
  const std::string metrics = join_path(cfg.run.dir, "metrics.jsonl");
  for (auto& line : read_json_lines(metrics)) {
    if (!line.count("forget_ce")) continue;  // training lines
    AttackPoint p;
    try {
      p = AttackPoint::from_json(line);
    } catch (const InputError& e) {
      UNDO_INPUT_FAIL("'", metrics, "': ", e.what());
    }
    p.lr = lr;
    p.seed = cfg.run.seed;
    out += p.to_json().str() + "\n";
  }
  return out;
}

JsonObject attack_summary(const std::vector<AttackPoint>& worst, const Config& cfg) {
  JsonObject o;
  o.add("stage", "relearn").add("metric", attack_metric(worst)).add("lrs", cfg.relearn.lrs)
      .add("seeds", cfg.relearn.seeds).add("steps", cfg.relearn.steps).add("eval_every", cfg.relearn.eval_every);
  o.add("before", attack_point_metrics(worst_at_or_before(worst, 0)))
      .add("after_40", attack_point_metrics(worst_at_or_before(worst, 40)))
      .add("after_all", attack_point_metrics(worst.back()));
  return o;
}

}  // namespace undo
