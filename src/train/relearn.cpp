#include "train/relearn.h"

#include <algorithm>
#include <cstdlib>

#include "core/error.h"
#include "core/fs.h"
#include "train/trainer.h"

namespace undo {

JsonObject AttackPoint::to_json() const {
  JsonObject o;
  if (lr > 0) o.add("lr", lr).add("seed", seed);
  else o.add("worst_lr", worst_lr);
  o.add("step", step);
  for (auto& [k, v] : metrics) o.add(k, v);
  return o;
}

AttackPoint AttackPoint::from_json(const std::map<std::string, std::string>& line) {
  AttackPoint p;
  for (auto& [k, v] : line) {
    double x = std::strtod(v.c_str(), nullptr);
    if (k == "lr") p.lr = x;
    else if (k == "seed") p.seed = int64_t(x);
    else if (k == "step") p.step = int64_t(x);
    else if (k == "worst_lr") p.worst_lr = x;
    else if (k != "tokens") p.metrics[k] = x;
  }
  return p;
}

std::shared_ptr<StreamMix> attack_stream(const Config& cfg) {
  return std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.forget_mix", cfg.data.forget_mix), "train",
                                     cfg.model.seq_len);
}

void run_attack(const Config& base, double lr, Transformer& model, Evaluator& evaluator) {
  Config cfg = base;
  cfg.train.steps = cfg.relearn.steps;
  cfg.train.eval_every = cfg.relearn.eval_every;
  cfg.train.ckpt_every = std::min(cfg.train.ckpt_every > 0 ? cfg.train.ckpt_every : cfg.relearn.steps,
                                  cfg.relearn.steps);
  cfg.train.keep_ckpts = 1;
  cfg.optim.lr = lr;
  cfg.optim.min_lr = lr;
  cfg.optim.schedule = "constant";
  cfg.optim.warmup = 1;
  cfg.optim.weight_decay = 0;
  cfg.optim.grad_clip = 1.0;
  CrossEntropyObjective attack(attack_stream(cfg), cfg.model.seq_len);
  Trainer(cfg, "relearn", model, attack, &evaluator).run();
}

std::string attack_curve_jsonl(const Config& cfg, double lr, const std::map<std::string, double>& before) {
  std::string out;
  AttackPoint p0;
  p0.lr = lr;
  p0.seed = cfg.run.seed;
  p0.metrics = before;
  out += p0.to_json().str() + "\n";
  for (auto& line : read_json_lines(join_path(cfg.run.dir, "metrics.jsonl"))) {
    if (!line.count("forget_ce")) continue;  // training lines
    auto p = AttackPoint::from_json(line);
    p.lr = lr;
    p.seed = cfg.run.seed;
    out += p.to_json().str() + "\n";
  }
  return out;
}

std::string attack_metric(const std::vector<AttackPoint>& points) {
  for (auto& p : points)
    if (p.metrics.count("forget_acc")) return "forget_acc";
  return "forget_ce";
}

std::vector<AttackPoint> worst_case(const std::vector<AttackPoint>& points) {
  const std::string metric = attack_metric(points);
  const bool higher_is_worse = metric == "forget_acc";  // worse for the defender
  std::map<int64_t, AttackPoint> by_step;
  for (auto& p : points) {
    auto it = p.metrics.find(metric);
    if (it == p.metrics.end()) continue;
    auto found = by_step.find(p.step);
    bool better_attack = found == by_step.end() ||
                         (higher_is_worse ? it->second > found->second.metrics.at(metric)
                                          : it->second < found->second.metrics.at(metric));
    if (!better_attack) continue;
    AttackPoint w = p;
    w.worst_lr = p.lr;
    w.lr = 0;
    w.seed = 0;
    by_step[p.step] = w;
  }
  std::vector<AttackPoint> out;
  for (auto& [step, p] : by_step) out.push_back(p);
  return out;
}

JsonObject attack_summary(const std::vector<AttackPoint>& worst, const Config& cfg) {
  UNDO_CHECK(!worst.empty(), "relearn: no evaluations to summarise");
  auto at_or_before = [&](int64_t step) {
    const AttackPoint* best = &worst.front();
    for (auto& p : worst)
      if (p.step <= step) best = &p;
    return *best;
  };
  JsonObject o;
  o.add("stage", "relearn").add("metric", attack_metric(worst)).add("lrs", cfg.relearn.lrs)
      .add("seeds", cfg.relearn.seeds).add("steps", cfg.relearn.steps).add("eval_every", cfg.relearn.eval_every);
  for (auto [name, point] : {std::pair{"before", at_or_before(0)}, {"after_40", at_or_before(40)},
                             {"after_all", worst.back()}}) {
    JsonObject m;
    m.add("step", point.step).add("worst_lr", point.worst_lr);
    for (auto& [k, v] : point.metrics)
      if (k == "forget_ce" || k == "retain_ce" || k == "forget_acc" || k == "retain_acc") m.add(k, v);
    o.add(name, m);
  }
  return o;
}

}  // namespace undo
