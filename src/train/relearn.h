// The relearning attack's pieces: one attack run (finetuning on the forget
// stream), its evaluation curve, and the worst case over LRs and seeds.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/json.h"
#include "results/attack_curve.h"
#include "data/stream.h"
#include "eval/evaluator.h"
#include "model/transformer.h"
#include "train/parallelism.h"

namespace undo {

// The data an attack trains on: the forget mix (data.forget_mix), train split.
std::shared_ptr<StreamMix> attack_stream(const Config& cfg);
// Refuses (exit 2, naming relearn.batch_size) an attack step that would hold
// more sequences than the forget stream has windows.
void check_attack_batch(const Config& cfg);
// Finetunes `model` on the forget stream with constant LR `lr` for cfg.relearn.steps
// (one warmup step, weight decay 0, clip 1.0), evaluating every cfg.relearn.eval_every
// steps into cfg.run.dir/metrics.jsonl; resumes from cfg.run.dir's checkpoint.
// `parallel`: the run's layout, which made `model`.
void run_attack(const Config& cfg, std::shared_ptr<Parallelism> parallel, double lr, Transformer& model,
                Evaluator& evaluator);
// The curve of a finished attack: `before` at step 0, then the evaluation lines of its metrics.jsonl.
std::string attack_curve_jsonl(const Config& cfg, double lr, const std::map<std::string, double>& before);

// Before the attack (step 0), after 40 steps (or the last evaluation before), and at the end.
JsonObject attack_summary(const std::vector<AttackPoint>& worst, const Config& cfg);

}  // namespace undo
