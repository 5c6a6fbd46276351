// Arithmetic data (the spec's second setting): addition and subtraction are
// retained, multiplication and division are forgotten. Two formats, equations
// and word problems.
//
// Held out by construction: a fixed quarter of each operation's problems (by
// operation and operands, the same in every run) and two word-problem
// templates per operation are never trained on. Training streams, and so the
// relearning attack, draw only from the rest; validation streams and the
// evaluation set draw only from the held-out quarter, word problems only from
// the held-out templates. So "forget accuracy" measures the capability on
// problems the model has not seen, not the recall of memorised strings.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace undo {

enum class Op { Add, Sub, Mul, Div };
enum class Format { Equation, Word };

struct Problem {
  Op op;
  Format format;
  int a, b, answer;
  std::string prompt;  // text up to the answer ("12 + 7 =")
  std::string text() const { return prompt + " " + std::to_string(answer); }
};

const char* op_name(Op op);          // "add", "sub", "mul", "div"
const char* format_name(Format f);   // "equation", "word"
Op op_from_name(const std::string& name);
Format format_from_name(const std::string& name);

// Operands per the spec: add/sub in [1,50] (subtraction ordered so the result
// is >= 0), mul/div in [1,20] (division exact: a*b / b). A problem is named
// by (op, a, b) as written: 2500 additions, 1275 subtractions, 400 of each of
// multiplication and division.
// True when (op, a, b) is in the held-out quarter.
bool is_held_out(Op op, int a, int b);
// The held-out (a, b) of `op` (625, 319, 100, 100 for add, sub, mul, div).
const std::vector<std::pair<int, int>>& held_out_operands(Op op);

// One problem drawn uniformly from the training or the held-out operands,
// with a training or a held-out template, deterministic in `seed`.
Problem make_problem(Op op, Format format, uint64_t seed, bool held_out);

// `n` training problems of `op`, half equations and half word problems, deterministic in `seed`.
std::vector<Problem> training_problems(Op op, int n, uint64_t seed);
// `n` held-out problems the same way (the validation streams).
std::vector<Problem> validation_problems(Op op, int n, uint64_t seed);
// The seed of the evaluation set: fixed, so every run of a setting is scored on the same problems.
constexpr uint64_t kEvalProblemSeed = 20250606;
// `per_format` equations plus `per_format` word problems on distinct held-out
// operands in a fixed order (`seed`), so a smaller set is a prefix of a larger
// one; per_format is at most the smallest held-out pool, kEvalMaxPerFormat.
std::vector<Problem> eval_problems(Op op, int per_format, uint64_t seed);
constexpr int kEvalMaxPerFormat = 100;

// First integer in `text` (optionally signed); false when there is none.
bool parse_first_number(const std::string& text, long* out);

}  // namespace undo
