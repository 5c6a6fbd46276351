#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include "cli/stage_result.h"
#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/stage_settings.h"
#include "results/attack_curve.h"
#include "train/objectives/distill.h"
#include "train/stage_models.h"
#include "train/teacher_cache.h"

namespace undo {

int stage_distill(int argc, const char* const* argv) {
  Config cfg;
  std::string teacher_path, cache_file;
  if (!parse_config(argc, argv, "distill", cfg,
                    {{"teacher", "checkpoint of the (unlearned) teacher", &teacher_path, true, true},
                     {"cache-file", "teacher-logit cache to use (default: distill.cache_dir, named by its key)",
                      &cache_file}}))
    return 0;
  CheckpointReader teacher_file(teacher_path);  // verified once: the teacher and a noised student read it
  const CheckpointMeta& teacher_meta = teacher_file.meta();
  const auto& d = cfg.distill;
  // A noised student is the teacher's architecture; a random one may be any
  // (model.* keys), and is the teacher's where no model key is given (an
  // imported Llama teacher gets a fresh Llama student, not undo's default).
  const bool model_keys_given = std::any_of(cfg.origin.begin(), cfg.origin.end(),
                                            [](const auto& o) { return o.first.rfind("model.", 0) == 0; });
  if (d.init == "noised" || !model_keys_given) cfg.model = teacher_meta.model;
  UNDO_INPUT_CHECK(cfg.model.vocab_size == 0 || cfg.model.vocab_size == teacher_meta.model.vocab_size,
                   "model.vocab_size = ", cfg.model.vocab_size, " differs from the teacher's ",
                   teacher_meta.model.vocab_size);
  cfg.model.vocab_size = teacher_meta.model.vocab_size;
  cfg.model.seq_len = teacher_meta.model.seq_len;
  apply_stage_settings(cfg, TrainingStage::Distill);  // the distill.* budget and schedule
  cfg.inputs["teacher"] = teacher_path;  // in the run's identity: --resume refuses another one
  prepare_run(cfg);
  // The run's layout lays out both models: under dist.zero = 3 the frozen
  // teacher is sharded as it is read (each rank reads its slices of the
  // file) and runs forward gathered unit by unit, and the student is sharded as it is made.
  auto parallel = make_parallelism(cfg);
  Transformer teacher = load_model_for_run(cfg, *parallel, teacher_file, /*frozen=*/true);
  Transformer student = d.init == "noised" ? noised_model_for_run(cfg, *parallel, teacher_file)
                                           : initialised_model_for_run(cfg, *parallel);
  // Distillation data: the base pretraining mix, unlabelled, as a numbered stream.
  auto comm = distributed();
  DistillStream stream{std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix),
                                                   "train", cfg.model.seq_len),
                       uint64_t(cfg.distill.data_seed), uint64_t(cfg.distill.data_offset),
                       int64_t(cfg.train.batch_size) * cfg.train.accum * (comm ? comm->world() : 1)};
  std::unique_ptr<DistillObjective> objective;
  TeacherCache cache;
  if (d.cache == "off") {
    UNDO_INPUT_CHECK(cache_file.empty(), "--cache-file given with distill.cache = off");
    objective = std::make_unique<DistillObjective>(stream, teacher);
  } else {
    auto key = teacher_cache_key(cfg, teacher_path, cfg.data.base_mix, cfg.model.vocab_size);
    uint64_t rows = uint64_t(d.steps) * uint64_t(stream.global_batch);
    cache = ensure_teacher_cache(cfg, key, rows, teacher, d.cache, cache_file);
    objective = std::make_unique<DistillObjective>(stream, std::make_shared<LogitCacheReader>(cache.path));
  }
  Evaluator evaluator(cfg);

  // The stopping rule: the student has recovered the teacher's retain
  // performance, judged on validation (never on the test figures it reports).
  evaluator.run(teacher);
  auto target = evaluator.last();
  std::string metric = d.stop_metric;
  if (metric == "auto") metric = target.count("retain_acc") ? "retain_acc" : "retain_ce";
  UNDO_INPUT_CHECK(metric == "none" || target.count(metric), "distill.stop_metric = ", metric,
                   " is not measured for this data (no arithmetic evaluation)");
  const std::string judged = validation_metric_of(metric);
  auto recovered = [&](const std::map<std::string, double>& now) {
    if (metric == "retain_ce") return (now.at(judged) - target.at(judged)) / target.at(judged) < d.stop_tol;
    return target.at(judged) - now.at(judged) <= d.stop_tol;
  };

  std::string stage = "distill-" + d.init;
  auto t0 = std::chrono::steady_clock::now();
  Trainer trainer(cfg, stage, student, *objective, &evaluator, parallel);
  trainer.stopping_rule = [&](int64_t step) {
    return metric != "none" && step % d.check_every == 0 && recovered(evaluator.last());
  };
  TrainResult r = trainer.run();
  const int64_t stopped_at = r.rule_stopped_at;
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Teacher compute: spent online in this run, or what the cache cost when built.
  int64_t teacher_tokens = objective->teacher_tokens();
  if (comm) teacher_tokens = int64_t(std::llround(comm->mean(double(teacher_tokens)) * comm->world()));
  if (d.cache != "off") teacher_tokens = cache.teacher_tokens;
  if (stopped_at > 0 && is_writer())
    std::cerr << stage << ": retain " << metric << " recovered at step " << stopped_at << "\n";
  std::map<std::string, std::string> extra = {{"teacher", teacher_path},
                                              {"init", d.init},
                                              {"alpha", format_double(d.init == "noised" ? d.alpha : 1.0)},
                                              {"beta", format_double(d.beta)},
                                              {"stop_metric", metric},
                                              {"stopped_at", std::to_string(stopped_at)},
                                              {"teacher_forward_tokens", std::to_string(teacher_tokens)},
                                              {"teacher_logits", d.cache == "off" ? "online" : cache.path},
                                              {"cache_built", cache.built ? "1" : "0"}};
  if (metric != "none") extra["teacher_" + judged] = format_double(target.at(judged));
  write_stage_result(cfg, stage, student, r, wall, extra, &teacher_meta);
  return 0;
}

}  // namespace undo
