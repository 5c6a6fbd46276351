// Evaluation: cross-entropy on held-out retain and forget text, and on
// held-out arithmetic problems both the accuracy of greedy decoding (exact
// match of the first number) and the answer's negative log-likelihood given
// the prompt ("answer CE", in nats per answer). Accuracy is what the paper
// reports; a small model that rarely gets a held-out product right sits at
// accuracy's floor, where answer CE still measures how close it comes.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/json.h"
#include "core/stop_signal.h"
#include "data/arithmetic.h"
#include "data/shard.h"
#include "data/eval_prompts.h"
#include "data/vocabulary.h"
#include "model/transformer.h"

namespace undo {

// Each of these polls `poll` between its batches (and greedy_complete between
// generated tokens) and throws StopRequested when it says stop.

// Mean next-token CE over the first `n_windows` consecutive windows of `shard`.
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
  // retain_ce, forget_ce, ce_<stream>; for arithmetic also retain_acc,
  // forget_acc, acc_<op>_<format>, retain_answer_ce, forget_answer_ce and
  // answer_ce_<op>_<format> (retain: add and sub; forget: mul and div).
  // A stop (see core/stop_signal.h) throws StopRequested between batches.
  JsonObject run(Transformer& model, const StopPoll& poll = {});
  std::map<std::string, double> last() const { return last_; }

 private:
  Config cfg_;
  std::map<std::string, std::unique_ptr<Shard>> shards_;
  std::vector<std::string> retain_, forget_;
  std::unique_ptr<Vocabulary> vocab_;
  std::map<Op, std::vector<EvalPrompt>> problems_;
  std::map<std::string, double> last_;
};

}  // namespace undo
