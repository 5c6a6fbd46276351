#include "core/stage_settings.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace undo {
namespace {

struct Owned {
  const char* key;     // the general key the stage sets
  const char* source;  // what it is set from, for the message
};

const std::vector<Owned>& owned(TrainingStage stage) {
  static const std::vector<Owned> unlearn = {
      {"train.steps", "unlearn.steps"},
      {"optim.lr", "unlearn.lr"},
      {"optim.min_lr", "unlearn.lr (constant LR)"},
      {"optim.schedule", "the spec's unlearning optimiser (constant LR)"},
      {"optim.warmup", "the spec's unlearning optimiser (no warmup)"},
      {"optim.weight_decay", "the spec's unlearning optimiser (weight decay 0)"},
      {"optim.grad_clip", "the spec's unlearning optimiser (clip 1.0)"}};
  static const std::vector<Owned> distill = {{"train.steps", "distill.steps"},
                                             {"optim.lr", "distill.lr"},
                                             {"optim.min_lr", "distill.min_lr"},
                                             {"optim.warmup", "distill.warmup"},
                                             {"optim.schedule", "the spec's distillation schedule (cosine)"},
                                             {"train.eval_every", "distill.check_every"}};
  static const std::vector<Owned> relearn = {
      {"train.steps", "relearn.steps"},
      {"train.eval_every", "relearn.eval_every"},
      {"optim.lr", "relearn.lrs"},
      {"optim.min_lr", "relearn.lrs (constant LR)"},
      {"optim.schedule", "the spec's attack (constant LR)"},
      {"optim.warmup", "the spec's attack (1 warmup step)"},
      {"optim.weight_decay", "the spec's attack (weight decay 0)"},
      {"optim.grad_clip", "the spec's attack (clip 1.0)"},
      {"train.keep_ckpts", "the attack (one checkpoint per LR, for resumption)"}};
  return stage == TrainingStage::Unlearn ? unlearn : stage == TrainingStage::Distill ? distill : relearn;
}

// The share of data.base_mix's weight on the streams of data.forget_mix.
double forget_fraction(const Config& cfg) {
  double total = 0, forget = 0;
  auto forget_streams = parse_mix("data.forget_mix", cfg.data.forget_mix);
  for (auto& [stream, weight] : parse_mix("data.base_mix", cfg.data.base_mix)) {
    total += weight;
    for (auto& f : forget_streams)
      if (f.first == stream) forget += weight;
  }
  return total > 0 ? forget / total : 0;
}

const char* stage_name(TrainingStage stage) {
  return stage == TrainingStage::Unlearn ? "unlearn" : stage == TrainingStage::Distill ? "distill" : "relearn";
}

void set_stage_values(Config& cfg, TrainingStage stage, double attack_lr) {
  auto& o = cfg.optim;
  auto& t = cfg.train;
  switch (stage) {
    case TrainingStage::Unlearn:
      t.steps = cfg.unlearn.steps;
      o.lr = o.min_lr = cfg.unlearn.lr;
      o.schedule = "constant";
      o.warmup = 0;
      o.weight_decay = 0;
      o.grad_clip = 1.0;
      // Not owned: evaluations and checkpoints a longer interval would skip happen at the end.
      t.eval_every = std::min(t.eval_every, t.steps);
      t.ckpt_every = std::min(t.ckpt_every, t.steps);
      break;
    case TrainingStage::Distill:
      t.steps = cfg.distill.steps;
      o.lr = cfg.distill.lr;
      o.min_lr = std::min(cfg.distill.min_lr, cfg.distill.lr);
      o.warmup = cfg.distill.warmup;
      o.schedule = "cosine";
      t.eval_every = cfg.distill.check_every;
      break;
    case TrainingStage::Relearn:
      t.batch_size = attack_batch(cfg).rows;  // from the pretraining keys, before they change
      t.accum = cfg.relearn.accum;
      t.steps = cfg.relearn.steps;
      t.eval_every = cfg.relearn.eval_every;
      t.ckpt_every = std::min(t.ckpt_every > 0 ? t.ckpt_every : t.steps, t.steps);
      t.keep_ckpts = 1;
      o.lr = o.min_lr = attack_lr;
      o.schedule = "constant";
      o.warmup = 1;
      o.weight_decay = 0;
      o.grad_clip = 1.0;
      break;
  }
}

}  // namespace

void apply_stage_settings(Config& cfg, TrainingStage stage, double attack_lr) {
  Config want = cfg;
  set_stage_values(want, stage, attack_lr);
  auto now = describe(cfg), then = describe(want);  // the same keys, in the same order
  for (size_t i = 0; i < now.size(); ++i) {
    const std::string& key = now[i].name;
    auto it = std::find_if(owned(stage).begin(), owned(stage).end(), [&](const Owned& o) { return key == o.key; });
    auto origin = cfg.origin.find(key);
    if (it == owned(stage).end() || origin == cfg.origin.end() || origin->second != "command line") continue;
    UNDO_INPUT_CHECK(now[i].value() == then[i].value(), "--", key, " ", now[i].value(), ": `undo ",
                     stage_name(stage), "` sets ", key, " itself, from ", it->source, " (here ", then[i].value(),
                     "); set that instead");
  }
  cfg = want;
}

AttackBatch attack_batch(const Config& cfg) {
  const RelearnConfig& r = cfg.relearn;
  const double pretrain_rows = double(cfg.train.steps) * cfg.train.batch_size * cfg.train.accum * forget_fraction(cfg);
  AttackBatch b;
  if (r.batch_size > 0) {
    b.rows = r.batch_size;
  } else {
    UNDO_INPUT_CHECK(pretrain_rows > 0, "relearn.batch_size = 0 sizes the attack by relearn.forget_share of the "
                     "forget tokens pretraining saw, but data.base_mix (", cfg.data.base_mix, ") holds none of "
                     "data.forget_mix (", cfg.data.forget_mix, "): give relearn.batch_size");
    b.rows = int(std::max<long long>(1, std::llround(r.forget_share * pretrain_rows / (double(r.steps) * r.accum))));
  }
  b.forget_share = pretrain_rows > 0 ? double(r.steps) * b.rows * r.accum / pretrain_rows : NAN;
  return b;
}

std::vector<std::string> stage_owned_keys(TrainingStage stage) {
  std::vector<std::string> keys;
  for (auto& o : owned(stage)) keys.push_back(o.key);
  return keys;
}

bool stage_reads_key(const std::string& stage_name, const std::string& key) {
  const std::string stage = stage_name.substr(0, stage_name.find('-')) == "cache" ? "cache-logits"
                                                                                  : stage_name.substr(0, stage_name.find('-'));
  const std::string section = key.substr(0, key.find('.'));
  if (stage == "data") return section == "data" || section == "run";
  for (const char* own : {"pretrain", "unlearn", "distill", "relearn"})
    if (section == own) return stage == own || (section == "distill" && stage == "cache-logits");
  return true;  // run, model, data, train, optim, eval, dist: every training stage's
}

}  // namespace undo
