// Multiple-choice questions, as the benchmarks that unlearning papers report
// ship them (WMDP, MMLU): a JSONL file, one question a line,
//   {"question": "...", "choices": ["...", "..."], "answer": 1}
// with `answer` the 0-based index of the right choice (other fields, such as
// MMLU's "subject", are ignored). Scored the way lm-evaluation-harness scores
// its multiple-choice tasks: each choice's log-likelihood as the continuation
// " CHOICE" of the context "Question: QUESTION\nAnswer:", the highest wins
// (accuracy), or the highest per character of the choice (length-normalised
// accuracy, lm-evaluation-harness's acc_norm).
//
// Two halves, because tokenizing and scoring run in different programs:
// undo-data, which has the tokenizer, writes a question file's tokens
// (write_mcq_tokens); undo, which has the model, reads them back
// (read_mcq_tokens) and scores them (eval/mcq_scorer.h). The same questions
// also serve as a training corpus ("mcq:FILE" in data.english_dirs or
// data.forget_dirs), each rendered as its context and right answer.
#pragma once
#include <string>
#include <vector>

namespace undo {

struct McqQuestion {
  int line = 0;  // 1-based line of its file, for messages
  std::string question;
  std::vector<std::string> choices;
  int answer = 0;
};

// Every question of `path`; InputError naming the file and line for a line
// that is not a JSON object, lacks a field, has fewer than two choices or an
// answer outside them, and for a file with no question (blank lines are skipped).
std::vector<McqQuestion> read_mcq_file(const std::string& path);

// What the model is conditioned on, and what each choice is scored as
// (lm-evaluation-harness's target delimiter, a space, belongs to the choice).
std::string mcq_context(const McqQuestion& q);
std::string mcq_continuation(const McqQuestion& q, size_t choice);
// The question as training text: its context and its right answer.
std::string mcq_rendered(const McqQuestion& q);

// One question as token ids: the context's, and what each choice adds to it
// (the tokens of context + continuation after the context's own, as
// lm-evaluation-harness splits them), with each choice's length in characters
// (Unicode code points) for length normalisation.
struct McqTokens {
  int line = 0;
  int answer = 0;
  std::vector<int> context;
  std::vector<std::vector<int>> choices;
  std::vector<int> choice_chars;
};

// The tokens file: one JSON object a line, {"line", "answer", "context"
// ("12 7 431"), "choices" (["5 9", "88"]), "choice_chars" ([3, 5])}.
void write_mcq_tokens(const std::string& path, const std::vector<McqTokens>& questions);
// InputError naming the file and line for a bad line, an id outside
// [0, vocab_size) or a choice with no tokens.
std::vector<McqTokens> read_mcq_tokens(const std::string& path, int vocab_size);

// A sweep's question metrics (data.forget_mcq, data.retain_mcq): `undo data
// prepare` splits each file's questions into validation (selection) and test
// (reporting) halves and writes their tokens to
// DATA/mcq_<side>.<split>.jsonl, side "forget" or "retain", split "val" or
// "test"; the evaluator scores them as <side>_mcq_acc.
std::string mcq_tokens_path(const std::string& data_dir, const std::string& side, const std::string& split);

}  // namespace undo
