// Multiple-choice accuracy (data/mcq.h says what a question is and how it is
// tokenized), scored as lm-evaluation-harness scores a causal model: each
// choice's summed log-probability given the context, the context and choice
// cut from the left to the model's window (plus the one token that is only a
// target), as the harness does at its max_length. Accuracy takes the choice of
// highest log-likelihood, length-normalised accuracy the highest per
// character; ties go to the first, as numpy's argmax does. Standard errors are
// the harness's: the sample standard deviation (n - 1) over sqrt(n).
#pragma once
#include <string>
#include <vector>

#include "core/stop_signal.h"
#include "data/mcq.h"
#include "model/transformer.h"

namespace undo {

// Refuses (InputError naming `file` and the question's line) a choice longer
// than `window` tokens, which no model of that window can score: what a stage
// calls before any compute.
void check_mcq_fits(const std::vector<McqTokens>& questions, int64_t window, const std::string& file);

// log p(choice | context) of every choice of every question, in order. With
// `progress`, a stage that takes longer than a few seconds prints a progress
// line (`undo eval --mcq`; not the evaluations inside training).
std::vector<std::vector<double>> mcq_loglikelihoods(Transformer& model, const std::vector<McqTokens>& questions,
                                                    bool bf16, const StopPoll& poll = {}, bool progress = false);

struct McqScore {
  int questions = 0;
  double acc = 0, acc_se = 0, acc_norm = 0, acc_norm_se = 0;
  std::vector<int> chosen, chosen_norm;  // per question: the choice each rule picks
};

McqScore score_mcq(const std::vector<McqTokens>& questions, const std::vector<std::vector<double>>& loglikelihoods);

}  // namespace undo
