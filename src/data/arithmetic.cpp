#include "data/arithmetic.h"

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

Problem make_problem(Op op, Format format, uint64_t seed, bool held_out_templates) {
  uint64_t h1 = splitmix64(seed), h2 = splitmix64(h1), h3 = splitmix64(h2);
  Problem p{op, format, 0, 0, 0, ""};
  bool small = op == Op::Mul || op == Op::Div;
  int range = small ? 20 : 50;
  int x = 1 + int(h1 % uint64_t(range)), y = 1 + int(h2 % uint64_t(range));
  static const char* symbols[] = {"+", "-", "*", "/"};
  switch (op) {
    case Op::Add: p.a = x; p.b = y; p.answer = x + y; break;
    case Op::Sub: p.a = std::max(x, y); p.b = std::min(x, y); p.answer = p.a - p.b; break;
    case Op::Mul: p.a = x; p.b = y; p.answer = x * y; break;
    case Op::Div: p.a = x * y; p.b = y; p.answer = x; break;
  }
  if (format == Format::Equation) {
    p.prompt = std::to_string(p.a) + " " + symbols[int(op)] + " " + std::to_string(p.b) + " =";
  } else {
    const auto& ts = kTemplates[int(op)];
    int n_train = int(ts.size()) - kHeldOut;
    int idx = held_out_templates ? n_train + int(h3 % kHeldOut) : int(h3 % uint64_t(n_train));
    p.prompt = fill(ts[size_t(idx)], p.a, p.b);
  }
  return p;
}

std::vector<Problem> training_problems(Op op, int n, uint64_t seed) {
  std::vector<Problem> out;
  for (int i = 0; i < n; ++i)
    out.push_back(make_problem(op, i % 2 ? Format::Word : Format::Equation,
                               splitmix64(seed * 4 + uint64_t(op)) ^ uint64_t(i), false));
  return out;
}

std::vector<Problem> eval_problems(Op op, int per_format, uint64_t seed) {
  std::vector<Problem> out;
  for (Format f : {Format::Equation, Format::Word})
    for (int i = 0; i < per_format; ++i)
      out.push_back(make_problem(op, f, splitmix64(~seed * 8 + uint64_t(op) * 2 + uint64_t(f)) ^ uint64_t(i),
                                 f == Format::Word));
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
