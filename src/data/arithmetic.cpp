#include "data/arithmetic.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "data/stream.h"

namespace undo {
namespace {

// Word-problem templates: {A} and {B} are operands; the prompt ends where the
// answer goes. The last two per operation are held out for evaluation.
const std::vector<std::vector<std::string>> kTemplates = {
    {"Tom has {A} apples and buys {B} more. How many apples does he have now? Answer:",
     "A shelf holds {A} books. Someone adds {B} books. How many books are on the shelf? Answer:",
     "There are {A} birds in a tree and {B} more land. How many birds are there? Answer:",
     "Sara walked {A} miles on Monday and {B} miles on Tuesday. How many miles in total? Answer:",
     "What is {A} plus {B}? Answer:",
     "A farm has {A} cows and {B} sheep. How many animals are there? Answer:",
     "If you add {B} to {A}, what do you get? Answer:",
     "A class has {A} girls and {B} boys. How many students are in the class? Answer:"},
    {"Tom has {A} apples and eats {B} of them. How many apples are left? Answer:",
     "A shelf holds {A} books. Someone takes {B} away. How many books remain? Answer:",
     "There are {A} birds in a tree and {B} fly off. How many birds are left? Answer:",
     "Sara had {A} dollars and spent {B}. How many dollars does she have now? Answer:",
     "What is {A} minus {B}? Answer:",
     "A bus carries {A} people and {B} get off. How many are still on the bus? Answer:",
     "If you take {B} from {A}, what is left? Answer:",
     "A jar holds {A} cookies. The children eat {B}. How many cookies stay in the jar? Answer:"},
    {"Tom has {A} bags with {B} apples in each. How many apples does he have? Answer:",
     "A shelf has {A} rows of {B} books. How many books are on the shelf? Answer:",
     "There are {A} trees with {B} birds in each. How many birds are there? Answer:",
     "Sara reads {B} pages a day for {A} days. How many pages does she read? Answer:",
     "What is {A} times {B}? Answer:",
     "A farm has {A} pens with {B} sheep each. How many sheep are there? Answer:",
     "If you multiply {A} by {B}, what do you get? Answer:",
     "A box holds {A} packs of {B} pencils. How many pencils are in the box? Answer:"},
    {"Tom shares {A} apples equally among {B} friends. How many does each friend get? Answer:",
     "A shelf of {A} books is split into {B} equal rows. How many books are in each row? Answer:",
     "There are {A} birds in {B} equal flocks. How many birds are in each flock? Answer:",
     "Sara reads {A} pages in {B} days, the same each day. How many pages a day? Answer:",
     "What is {A} divided by {B}? Answer:",
     "A farmer puts {A} sheep into {B} pens equally. How many sheep are in each pen? Answer:",
     "If you divide {A} by {B}, what do you get? Answer:",
     "A box of {A} pencils is shared by {B} children equally. How many pencils does each get? Answer:"},
};
constexpr int kHeldOut = 2;

// Equations: the training rendering first, then the held-out ones; {S} is the
// operation's symbol. A held-out rendering changes the string, never the
// problem: what the model must know is the same product.
const std::vector<std::string> kEquations = {"{A} {S} {B} =", "{A}{S}{B} =", "({A} {S} {B}) ="};

std::string fill(std::string t, int a, int b) {
  auto put = [&](const std::string& key, int v) {
    auto p = t.find(key);
    if (p != std::string::npos) t.replace(p, key.size(), std::to_string(v));
  };
  put("{A}", a);
  put("{B}", b);
  return t;
}

// Template `hash`'s pick among the training templates of `all` (all but the
// last kHeldOut) or the held-out ones (those last).
const std::string& pick(const std::vector<std::string>& all, uint64_t hash, bool held_out) {
  const uint64_t n_train = all.size() - kHeldOut;
  return all[held_out ? n_train + hash % kHeldOut : hash % n_train];
}

}  // namespace

const char* op_name(Op op) {
  static const char* names[] = {"add", "sub", "mul", "div"};
  return names[int(op)];
}
const char* format_name(Format f) { return f == Format::Equation ? "equation" : "word"; }

Op op_from_name(const std::string& name) {
  for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div})
    if (name == op_name(op)) return op;
  UNDO_FAIL("unknown arithmetic operation '", name, "'");
}
Format format_from_name(const std::string& name) {
  if (name == "equation") return Format::Equation;
  if (name == "word") return Format::Word;
  UNDO_FAIL("unknown problem format '", name, "'");
}

namespace {

struct Pools {
  std::vector<std::pair<int, int>> train, held_out, validation, test;
};

// Every problem of `op` by its written operands, ranked by a hash of (op, a, b):
// the first quarter is held out, the rest is the training pool, whose
// problems alternate in rank between the validation and the test half. Fixed
// for all runs, settings and seeds.
const Pools& pools(Op op) {
  static const std::vector<Pools> all = [] {
    std::vector<Pools> out(4);
    for (Op o : {Op::Add, Op::Sub, Op::Mul, Op::Div}) {
      std::vector<std::pair<int, int>> ab;
      int range = (o == Op::Mul || o == Op::Div) ? 20 : 50;
      for (int x = 1; x <= range; ++x)
        for (int y = 1; y <= range; ++y) {
          if (o == Op::Sub && x < y) continue;  // a >= b: the result is never negative
          ab.push_back(o == Op::Div ? std::make_pair(x * y, y) : std::make_pair(x, y));
        }
      auto rank = [o](const std::pair<int, int>& p) {
        return splitmix64(0x5eed0fa11ULL ^ (uint64_t(o) << 40) ^ (uint64_t(p.first) << 20) ^ uint64_t(p.second));
      };
      std::sort(ab.begin(), ab.end(), [&](auto& l, auto& r) { return rank(l) < rank(r); });
      size_t held = (ab.size() + 3) / 4;
      out[size_t(o)].held_out.assign(ab.begin(), ab.begin() + long(held));
      Pools& p = out[size_t(o)];
      p.train.assign(ab.begin() + long(held), ab.end());
      for (size_t i = 0; i < p.train.size(); ++i) (i % 2 ? p.test : p.validation).push_back(p.train[i]);
    }
    return out;
  }();
  return all[size_t(op)];
}

Problem problem_of(Op op, Format format, std::pair<int, int> ab, uint64_t template_hash, bool held_out) {
  Problem p{op, format, ab.first, ab.second, 0, ""};
  switch (op) {
    case Op::Add: p.answer = p.a + p.b; break;
    case Op::Sub: p.answer = p.a - p.b; break;
    case Op::Mul: p.answer = p.a * p.b; break;
    case Op::Div: p.answer = p.a / p.b; break;
  }
  static const char* symbols[] = {"+", "-", "*", "/"};  // an equation's operator, per operation
  if (format == Format::Equation) {
    std::string t = pick(kEquations, template_hash, held_out);
    t.replace(t.find("{S}"), 3, symbols[int(op)]);
    p.prompt = fill(t, p.a, p.b);
  } else {
    p.prompt = fill(pick(kTemplates[int(op)], template_hash, held_out), p.a, p.b);
  }
  return p;
}

}  // namespace

const char* problem_set_name(ProblemSet s) {
  static const char* names[] = {"train", "val", "test", "general"};
  return names[int(s)];
}

ProblemSet problem_set_from_name(const std::string& name) {
  for (ProblemSet s : {ProblemSet::Training, ProblemSet::Validation, ProblemSet::Test, ProblemSet::Generalisation})
    if (name == problem_set_name(s)) return s;
  UNDO_FAIL("unknown problem set '", name, "' (train, val, test or general)");
}

const std::vector<std::pair<int, int>>& operands_of(Op op, ProblemSet set) {
  const Pools& p = pools(op);
  switch (set) {
    case ProblemSet::Training: return p.train;
    case ProblemSet::Validation: return p.validation;
    case ProblemSet::Test: return p.test;
    case ProblemSet::Generalisation: break;
  }
  return p.held_out;
}

std::vector<Problem> drawn_problems(Op op, ProblemSet set, int n, uint64_t seed) {
  std::vector<Problem> out;
  for (int i = 0; i < n; ++i)
    out.push_back(make_problem(op, i % 2 ? Format::Word : Format::Equation,
                               splitmix64(seed * 4 + uint64_t(op)) ^ uint64_t(i), set));
  return out;
}

bool is_held_out(Op op, int a, int b) {
  const auto& h = pools(op).held_out;
  return std::find(h.begin(), h.end(), std::make_pair(a, b)) != h.end();
}

const std::vector<std::pair<int, int>>& held_out_operands(Op op) { return pools(op).held_out; }

Problem make_problem(Op op, Format format, uint64_t seed, ProblemSet set) {
  uint64_t h1 = splitmix64(seed), h2 = splitmix64(h1);
  const auto& pool = operands_of(op, set);
  return problem_of(op, format, pool[h1 % pool.size()], h2, renders_held_out(set));
}

std::vector<Problem> eval_problems(Op op, ProblemSet set, int per_format, uint64_t seed) {
  UNDO_CHECK(set != ProblemSet::Training, "the training set is never scored");
  UNDO_CHECK(per_format >= 0 && per_format <= kEvalMaxPerFormat, "at most ", kEvalMaxPerFormat,
             " evaluation problems per format, asked for ", per_format);
  // The set's operands in an order fixed by `seed`: distinct problems, and prefixes of each other.
  auto order = operands_of(op, set);
  uint64_t h = splitmix64(~seed * 8 + uint64_t(op));
  for (size_t i = order.size(); i > 1; --i) {
    h = splitmix64(h);
    std::swap(order[i - 1], order[h % i]);
  }
  std::vector<Problem> out;
  for (Format f : {Format::Equation, Format::Word})
    for (int i = 0; i < per_format; ++i)
      out.push_back(problem_of(op, f, order[size_t(i)], splitmix64(h ^ uint64_t(i)), true));
  return out;
}

bool parse_first_number(const std::string& text, long* out) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) continue;
    bool neg = i > 0 && text[i - 1] == '-';
    long v = 0;
    size_t j = i;
    for (; j < text.size() && std::isdigit(static_cast<unsigned char>(text[j])) && j - i < 12; ++j)
      v = v * 10 + (text[j] - '0');
    *out = neg ? -v : v;
    return true;
  }
  return false;
}

}  // namespace undo
