// Evaluation: cross-entropy on held-out retain and forget text, and on
// arithmetic problems both the accuracy of greedy decoding (exact match of the
// first number) and the answer's negative log-likelihood given the prompt
// ("answer CE", in nats per answer). Accuracy is what the paper reports;
// where a model sits at accuracy's floor, answer CE still measures how close
// it comes.
//
// Validation and test apart: every figure is measured on the test windows
// and problems ("forget_acc"), and again on disjoint validation ones
// ("val_forget_acc"), which alone serve selection (the stopping rule, the
// attack's worst LR); the test figures carry their standard error
// ("se_forget_acc"). Arithmetic adds generalisation to held-out operands
// ("forget_gen_acc"; data/arithmetic.h says what each set holds). Question
// files (data.forget_mcq, data.retain_mcq) add multiple-choice accuracy
// ("forget_mcq_acc", "forget_mcq_acc_norm"; eval/mcq_scorer.h), validation
// and test halves apart in the same way.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/json.h"
#include "core/progress_line.h"
#include "core/stop_signal.h"
#include "data/arithmetic.h"
#include "data/shard.h"
#include "data/eval_prompts.h"
#include "data/mcq.h"
#include "data/vocabulary.h"
#include "model/transformer.h"

namespace undo {

// Each of these polls `poll` between its batches (and greedy_complete between
// generated tokens) and throws StopRequested when it says stop.

// Next-token CE of each of the first `n_windows` consecutive windows of `shard`.
std::vector<double> window_ces(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16,
                               const StopPoll& poll = {});
// Their mean.
double shard_ce(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16,
                const StopPoll& poll = {});

// True when the first number in `generated` equals `answer` (the scorer).
bool answer_correct(const std::string& generated, long answer);

// -log p(answer tokens | separator, prompt) of each prompt, teacher-forced.
std::vector<double> answer_nll(Transformer& model, int eos_id, const std::vector<EvalPrompt>& prompts, bool bf16,
                               const StopPoll& poll = {});

// Greedy completions of each prompt (after a document separator), decoded.
std::vector<std::string> greedy_complete(Transformer& model, const Vocabulary& vocab,
                                         const std::vector<EvalPrompt>& prompts, int max_new_tokens, bool bf16,
                                         const StopPoll& poll = {});

class Evaluator {
 public:
  explicit Evaluator(const Config& cfg);
  // Test: retain_ce, forget_ce, ce_<stream>; for arithmetic also retain_acc,
  // forget_acc, acc_<op>_<format>, retain_answer_ce, forget_answer_ce and
  // answer_ce_<op>_<format> (retain: add and sub; forget: mul and div), and
  // se_<figure>, their standard errors. Validation: val_<figure> of the
  // retain and forget figures. Generalisation: retain_gen_acc,
  // forget_gen_acc, retain_gen_answer_ce, forget_gen_answer_ce.
  // A stop (see core/stop_signal.h) throws StopRequested between batches.
  JsonObject run(Transformer& model, const StopPoll& poll = {});
  std::map<std::string, double> last() const { return last_; }
  // From now on a run that lasts longer than `quiet_s` prints a progress line
  // (core/progress_line.h) in parts: one stream's windows, one operation's
  // problems, one question file. `undo eval` asks for it; the evaluations
  // inside training do not (their stage's own line goes on).
  void show_progress(double quiet_s = 5) { progress_quiet_s_ = quiet_s; }

 private:
  void score_text(Transformer& model, const StopPoll& poll);
  void score_problems(Transformer& model, ProblemSet set, const StopPoll& poll);
  void score_questions(Transformer& model, const StopPoll& poll);
  int64_t parts() const;
  void part_done();

  Config cfg_;
  std::map<std::string, std::unique_ptr<Shard>> test_shards_, val_shards_;
  std::vector<std::string> retain_, forget_;
  std::unique_ptr<Vocabulary> vocab_;
  std::map<ProblemSet, EvalPromptSet> problems_;
  std::map<std::pair<std::string, std::string>, std::vector<McqTokens>> questions_;  // (side, split)
  std::map<std::string, double> last_;
  double progress_quiet_s_ = -1;  // negative: no progress line
  ProgressLine* progress_ = nullptr;  // during a run that shows one
  int64_t parts_done_ = 0;
};

}  // namespace undo
