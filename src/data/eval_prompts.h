// The scored arithmetic sets of a prepared data directory
// (DATA/eval_prompts.jsonl: validation, test and generalisation, see
// data/arithmetic.h), tokenized by `undo data prepare` so that the evaluator,
// which runs with LibTorch, never needs the tokenizer: one JSON object a line
// with set ("val", "test", "general"), op, format, a, b, answer, prompt, the
// prompt's token ids ("ids": "12 7 431") and the answer's ("answer_ids": the
// tokens the whole text "prompt answer" adds to the prompt's); per set and
// operation kEvalPromptsPerFormat equations then as many word problems, in
// eval_problems() order.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "data/arithmetic.h"

namespace undo {

struct EvalPrompt {
  Problem problem;
  std::vector<int> ids;         // the prompt's tokens (without the leading document separator)
  std::vector<int> answer_ids;  // the answer's tokens, as they follow the prompt in training text
};

constexpr int kEvalPromptsPerFormat = kEvalMaxPerFormat;  // every held-out multiplication (the smallest pool)

// The scored sets, in the order they are written.
inline constexpr ProblemSet kScoredSets[] = {ProblemSet::Validation, ProblemSet::Test, ProblemSet::Generalisation};

using EvalPromptSet = std::map<Op, std::vector<EvalPrompt>>;
void write_eval_prompts(const std::string& path, const std::map<ProblemSet, std::vector<EvalPrompt>>& prompts);
// The first `per_format` equations and word problems of each operation in
// every scored set; an InputError naming the file when it holds fewer (or a
// preparation from before the sets), or a bad line.
std::map<ProblemSet, EvalPromptSet> read_eval_prompts(const std::string& path, int per_format, int vocab_size);

}  // namespace undo
