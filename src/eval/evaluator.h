// Evaluation: cross-entropy on held-out retain and forget text, and
// arithmetic accuracy by greedy decoding with exact match of the first number.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/json.h"
#include "data/arithmetic.h"
#include "data/shard.h"
#include "data/eval_prompts.h"
#include "data/vocabulary.h"
#include "model/transformer.h"

namespace undo {

// Mean next-token CE over the first `n_windows` consecutive windows of `shard`.
double shard_ce(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16);

// True when the first number in `generated` equals `answer` (the scorer).
bool answer_correct(const std::string& generated, long answer);

// Greedy completions of each prompt (after a document separator), decoded.
std::vector<std::string> greedy_complete(Transformer& model, const Vocabulary& vocab,
                                         const std::vector<EvalPrompt>& prompts, int max_new_tokens, bool bf16);

class Evaluator {
 public:
  explicit Evaluator(const Config& cfg);
  // retain_ce, forget_ce, ce_<stream>; for arithmetic also retain_acc,
  // forget_acc and acc_<op>_<format>.
  JsonObject run(Transformer& model);
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
