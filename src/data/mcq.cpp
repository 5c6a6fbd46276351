#include "data/mcq.h"

#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"

namespace undo {
namespace {

// Calls `each(line_number, text)` for every non-blank line of `path`.
template <class F>
void for_each_line(const std::string& path, F each) {
  std::istringstream in(read_file(path));
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    if (line.find_first_not_of(" \t\r") != std::string::npos) each(number, line);
  }
}

std::string ids_text(const std::vector<int>& ids) {
  std::string s;
  for (int id : ids) s += (s.empty() ? "" : " ") + std::to_string(id);
  return s;
}

std::vector<int> ids_of(const JsonValue& v, int vocab_size) {
  std::vector<int> ids;
  std::istringstream in(v.string());
  for (std::string t; in >> t;) ids.push_back(int(parse_integer(v.where(), t, 0, vocab_size - 1)));
  return ids;
}

}  // namespace

std::vector<McqQuestion> read_mcq_file(const std::string& path) {
  UNDO_INPUT_CHECK(file_exists(path), "question file '", path, "' does not exist");
  std::vector<McqQuestion> out;
  for_each_line(path, [&](int line, const std::string& text) {
    const std::string where = path + ":" + std::to_string(line);
    JsonValue v = parse_json(text, where);
    UNDO_INPUT_CHECK(v.is_object(), where, ": not a JSON object (one question a line: question, choices, answer)");
    McqQuestion q;
    q.line = line;
    q.question = v.at("question").string();
    for (auto& c : v.at("choices").array()) {
      q.choices.push_back(c.string());
      UNDO_INPUT_CHECK(!q.choices.back().empty(), where, ": choice ", q.choices.size() - 1,
                       " is empty (length normalisation divides by its length)");
    }
    UNDO_INPUT_CHECK(q.choices.size() >= 2, where, ": \"choices\" holds ", q.choices.size(),
                     " choice(s); a question needs at least 2");
    const JsonValue& answer = v.at("answer");
    UNDO_INPUT_CHECK(answer.is_number(), where, ": \"answer\" is not a number (the 0-based index of the right choice)");
    const double a = answer.number();
    UNDO_INPUT_CHECK(a >= 0 && a < double(q.choices.size()) && a == double(int64_t(a)), where, ": \"answer\" = ",
                     answer.number(), " is not the index of one of its ", q.choices.size(), " choices (0-based)");
    q.answer = int(a);
    out.push_back(std::move(q));
  });
  UNDO_INPUT_CHECK(!out.empty(), "question file '", path, "' holds no question");
  return out;
}

std::string mcq_tokens_path(const std::string& data_dir, const std::string& side, const std::string& split) {
  return join_path(data_dir, "mcq_" + side + "." + split + ".jsonl");
}

std::string mcq_context(const McqQuestion& q) { return "Question: " + q.question + "\nAnswer:"; }
std::string mcq_continuation(const McqQuestion& q, size_t choice) { return " " + q.choices.at(choice); }
std::string mcq_rendered(const McqQuestion& q) { return mcq_context(q) + mcq_continuation(q, size_t(q.answer)); }

void write_mcq_tokens(const std::string& path, const std::vector<McqTokens>& questions) {
  std::string out;
  for (auto& q : questions) {
    std::string choices, chars;
    for (size_t c = 0; c < q.choices.size(); ++c) {
      choices += (c ? ", \"" : "\"") + ids_text(q.choices[c]) + "\"";
      chars += (c ? ", " : "") + std::to_string(q.choice_chars[c]);
    }
    JsonObject o;
    o.add("line", q.line).add("answer", q.answer).add("context", ids_text(q.context));
    o.add_raw("choices", "[" + choices + "]").add_raw("choice_chars", "[" + chars + "]");
    out += o.str() + "\n";
  }
  write_file_atomic(path, out);
}

std::vector<McqTokens> read_mcq_tokens(const std::string& path, int vocab_size) {
  UNDO_INPUT_CHECK(file_exists(path), "'", path, "' is missing: tokenize the questions again");
  std::vector<McqTokens> out;
  for_each_line(path, [&](int line, const std::string& text) {
    const std::string where = path + ":" + std::to_string(line);
    JsonValue v = parse_json(text, where);
    McqTokens q;
    q.line = int(v.at("line").integer(1, 1 << 30));
    q.context = ids_of(v.at("context"), vocab_size);
    for (auto& c : v.at("choices").array()) {
      q.choices.push_back(ids_of(c, vocab_size));
      UNDO_INPUT_CHECK(!q.choices.back().empty(), where, ": choice ", q.choices.size() - 1, " has no tokens");
    }
    for (auto& c : v.at("choice_chars").array()) q.choice_chars.push_back(int(c.integer(1, 1 << 30)));
    UNDO_INPUT_CHECK(q.choices.size() >= 2 && q.choice_chars.size() == q.choices.size(), where,
                     ": needs at least 2 choices, each with its length");
    q.answer = int(v.at("answer").integer(0, int64_t(q.choices.size()) - 1));
    out.push_back(std::move(q));
  });
  UNDO_INPUT_CHECK(!out.empty(), "'", path, "' holds no question");
  return out;
}

}  // namespace undo
