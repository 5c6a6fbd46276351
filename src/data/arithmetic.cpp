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

std::string fill(std::string t, int a, int b) {
  auto put = [&](const std::string& key, int v) {
    auto p = t.find(key);
    if (p != std::string::npos) t.replace(p, key.size(), std::to_string(v));
  };
  put("{A}", a);
  put("{B}", b);
  return t;
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
  std::vector<std::pair<int, int>> train, held_out;
};

// Every problem of `op` by its written operands, ranked by a hash of (op, a, b):
// the first quarter is held out. Fixed for all runs, settings and seeds.
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
      out[size_t(o)].train.assign(ab.begin() + long(held), ab.end());
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
  static const char* symbols[] = {"+", "-", "*", "/"};
  if (format == Format::Equation) {
    p.prompt = std::to_string(p.a) + " " + symbols[int(op)] + " " + std::to_string(p.b) + " =";
  } else {
    const auto& ts = kTemplates[int(op)];
    int n_train = int(ts.size()) - kHeldOut;
    int idx = held_out ? n_train + int(template_hash % kHeldOut) : int(template_hash % uint64_t(n_train));
    p.prompt = fill(ts[size_t(idx)], p.a, p.b);
  }
  return p;
}

std::vector<Problem> drawn_problems(Op op, int n, uint64_t seed, bool held_out) {
  std::vector<Problem> out;
  for (int i = 0; i < n; ++i)
    out.push_back(make_problem(op, i % 2 ? Format::Word : Format::Equation,
                               splitmix64(seed * 4 + uint64_t(op)) ^ uint64_t(i), held_out));
  return out;
}

}  // namespace

bool is_held_out(Op op, int a, int b) {
  const auto& h = pools(op).held_out;
  return std::find(h.begin(), h.end(), std::make_pair(a, b)) != h.end();
}

const std::vector<std::pair<int, int>>& held_out_operands(Op op) { return pools(op).held_out; }

Problem make_problem(Op op, Format format, uint64_t seed, bool held_out) {
  uint64_t h1 = splitmix64(seed), h2 = splitmix64(h1);
  const auto& pool = held_out ? pools(op).held_out : pools(op).train;
  return problem_of(op, format, pool[h1 % pool.size()], h2, held_out);
}

std::vector<Problem> training_problems(Op op, int n, uint64_t seed) { return drawn_problems(op, n, seed, false); }

std::vector<Problem> validation_problems(Op op, int n, uint64_t seed) { return drawn_problems(op, n, seed, true); }

std::vector<Problem> eval_problems(Op op, int per_format, uint64_t seed) {
  UNDO_CHECK(per_format >= 0 && per_format <= kEvalMaxPerFormat, "at most ", kEvalMaxPerFormat,
             " evaluation problems per format, asked for ", per_format);
  // The held-out operands in an order fixed by `seed`: distinct problems, and prefixes of each other.
  auto order = pools(op).held_out;
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
