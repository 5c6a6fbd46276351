// Arithmetic data (the spec's second setting): addition and subtraction are
// retained, multiplication and division are forgotten. Two formats, equations
// and word problems.
//
// What is scored, per the paper: no string a model trained on is ever scored.
// Every problem is named by (operation, operands); a fixed quarter of each
// operation's problems (the same in every run) is held out, and the rest is
// the training pool. Training streams, and so the relearning attack, draw from
// the training pool rendered with the training templates. Two word-problem
// templates and two equation renderings per operation are never trained on
// (held-out templates). The scored sets (ProblemSet):
//  - Test: training-pool operands rendered with held-out templates: the
//    paper's metric, what every reported figure uses ("forget_acc");
//  - Validation: the same, on the other half of the training pool (so its
//    problems are disjoint from Test's): the stopping rule, the attack's
//    worst-LR choice and any tuning select on it, never on Test;
//  - Generalisation: held-out operands rendered with held-out templates:
//    whether the capability generalises to products never seen, reported
//    beside the paper's metric ("forget_gen_acc"), never instead of it.
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

// Training: the whole training pool, training templates. The others are scored.
enum class ProblemSet { Training, Validation, Test, Generalisation };
const char* problem_set_name(ProblemSet s);  // "train", "val", "test", "general"
ProblemSet problem_set_from_name(const std::string& name);
// The operands a set draws from: Training the whole training pool, Validation
// and Test its two halves (938/937, 478/478, 150/150, 150/150), Generalisation
// the held-out quarter.
const std::vector<std::pair<int, int>>& operands_of(Op op, ProblemSet set);
// Whether `set` renders with held-out templates (every set but Training).
inline bool renders_held_out(ProblemSet set) { return set != ProblemSet::Training; }

// One problem drawn uniformly from `set`'s operands, rendered with its
// templates, deterministic in `seed`.
Problem make_problem(Op op, Format format, uint64_t seed, ProblemSet set);

// `n` problems of `op` from `set`, half equations and half word problems,
// deterministic in `seed`: the training streams (Training) and the validation
// and test streams' documents (whose CE is measured).
std::vector<Problem> drawn_problems(Op op, ProblemSet set, int n, uint64_t seed);
inline std::vector<Problem> training_problems(Op op, int n, uint64_t seed) {
  return drawn_problems(op, ProblemSet::Training, n, seed);
}
// The seed of the evaluation sets: fixed, so every run of a setting is scored on the same problems.
constexpr uint64_t kEvalProblemSeed = 20250606;
// `per_format` equations plus `per_format` word problems on distinct operands
// of `set` (not Training) in a fixed order (`seed`), so a smaller set is a
// prefix of a larger one; per_format is at most kEvalMaxPerFormat (every
// held-out product).
std::vector<Problem> eval_problems(Op op, ProblemSet set, int per_format, uint64_t seed);
constexpr int kEvalMaxPerFormat = 100;

// First integer in `text` (optionally signed); false when there is none.
bool parse_first_number(const std::string& text, long* out);

}  // namespace undo
