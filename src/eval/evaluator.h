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
#include "data/tokenizer.h"
#include "model/transformer.h"

namespace undo {

// Mean next-token CE over the first `n_windows` consecutive windows of `shard`.
double shard_ce(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16);

// True when the first number in `generated` equals `answer` (the scorer).
bool answer_correct(const std::string& generated, long answer);

// Greedy completions of each problem's prompt (after a document separator).
std::vector<std::string> greedy_complete(Transformer& model, const Tokenizer& tok, const std::vector<Problem>& ps,
                                         int max_new_tokens, bool bf16);

// The fixed held-out problem set (independent of the run's seed).
std::vector<Problem> arithmetic_eval_set(Op op, int per_format);

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
  std::unique_ptr<Tokenizer> tok_;
  std::map<Op, std::vector<Problem>> problems_;
  std::map<std::string, double> last_;
};

}  // namespace undo
