// Arithmetic data (the spec's second setting): addition and subtraction are
// retained, multiplication and division are forgotten. Two formats, equations
// and word problems; evaluation word problems use templates never trained on.
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
// is >= 0), mul/div in [1,20] (division exact: a*b / b).
Problem make_problem(Op op, Format format, uint64_t seed, bool held_out_templates);

// `n` problems of `op`, half equations and half word problems, deterministic in `seed`.
std::vector<Problem> training_problems(Op op, int n, uint64_t seed);
// The seed of the evaluation set: fixed, so every run of a setting is scored on the same problems.
constexpr uint64_t kEvalProblemSeed = 20250606;
// `per_format` equations plus `per_format` word problems (held-out templates).
std::vector<Problem> eval_problems(Op op, int per_format, uint64_t seed);

// First integer in `text` (optionally signed); false when there is none.
bool parse_first_number(const std::string& text, long* out);

}  // namespace undo
