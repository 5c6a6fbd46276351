#include "data/eval_prompts.h"

#include <sstream>
#include <tuple>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"

namespace undo {

void write_eval_prompts(const std::string& path, const std::map<ProblemSet, std::vector<EvalPrompt>>& sets) {
  std::string out;
  for (auto& [set, prompts] : sets) {
    for (auto& e : prompts) {
      auto joined = [](const std::vector<int>& v) {
        std::string s;
        for (int id : v) s += (s.empty() ? "" : " ") + std::to_string(id);
        return s;
      };
      const Problem& p = e.problem;
      JsonObject o;
      o.add("set", problem_set_name(set)).add("op", op_name(p.op)).add("format", format_name(p.format));
      o.add("a", p.a).add("b", p.b);
      o.add("answer", p.answer).add("prompt", p.prompt).add("ids", joined(e.ids)).add("answer_ids", joined(e.answer_ids));
      out += o.str() + "\n";
    }
  }
  write_file_atomic(path, out);
}

std::map<ProblemSet, EvalPromptSet> read_eval_prompts(const std::string& path, int per_format, int vocab_size) {
  UNDO_INPUT_CHECK(file_exists(path), "'", path, "' is missing: prepare the data again (`undo data prepare`)");
  std::map<ProblemSet, EvalPromptSet> out;
  std::map<std::tuple<ProblemSet, Op, Format>, int> taken;
  int line = 0;
  for (auto& row : read_json_lines(path)) {
    ++line;
    auto field = [&](const char* k) -> const std::string& {
      auto it = row.find(k);
      UNDO_INPUT_CHECK(it != row.end(), path, ": line ", line, " lacks \"", k, "\"");
      return it->second;
    };
    auto number = [&](const char* k) {
      return int(parse_integer(path + ": line " + std::to_string(line) + " \"" + k + "\"", field(k), -1000000, 1000000));
    };
    EvalPrompt e;
    ProblemSet set;
    try {
      set = problem_set_from_name(field("set"));
      e.problem = {op_from_name(field("op")), format_from_name(field("format")), number("a"), number("b"),
                   number("answer"), field("prompt")};
    } catch (const RuntimeError& err) {
      throw InputError(path + ": line " + std::to_string(line) + ": " + err.what());
    }
    auto tokens = [&](const char* k) {
      std::vector<int> v;
      std::istringstream in(field(k));
      for (std::string t; in >> t;)
        v.push_back(int(parse_integer(path + ": line " + std::to_string(line) + " \"" + k + "\"", t, 0, vocab_size - 1)));
      UNDO_INPUT_CHECK(!v.empty(), path, ": line ", line, " has no \"", k, "\" tokens");
      return v;
    };
    e.ids = tokens("ids");
    e.answer_ids = tokens("answer_ids");
    UNDO_INPUT_CHECK(set != ProblemSet::Training, path, ": line ", line, " scores a training problem");
    int& n = taken[{set, e.problem.op, e.problem.format}];
    if (n < per_format) out[set][e.problem.op].push_back(std::move(e)), ++n;
  }
  for (ProblemSet set : kScoredSets)
    for (Op op : {Op::Add, Op::Sub, Op::Mul, Op::Div})
      for (Format f : {Format::Equation, Format::Word}) {
        int n = taken[{set, op, f}];
        UNDO_INPUT_CHECK(n == per_format, "'", path, "' holds ", n, " ", problem_set_name(set), " ", op_name(op), " ",
                         format_name(f), " problems; eval.arith_per_op = ", per_format, " asks for more (at most ",
                         kEvalPromptsPerFormat, "; a preparation older than the validation and test sets holds none: "
                         "prepare the data again)");
      }
  return out;
}

}  // namespace undo
