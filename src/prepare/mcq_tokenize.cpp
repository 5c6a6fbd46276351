#include "prepare/mcq_tokenize.h"

#include "core/error.h"
#include "core/fs.h"
#include "core/utf8.h"
#include "data/prepared_check.h"

namespace undo {

std::vector<McqTokens> tokenize_mcq(const std::vector<McqQuestion>& questions, const TextTokenizer& tok,
                                    const std::string& file) {
  std::vector<McqTokens> out;
  for (auto& q : questions) {
    McqTokens t;
    t.line = q.line;
    t.answer = q.answer;
    const std::string context = mcq_context(q);
    t.context = tok.encode(context);
    UNDO_INPUT_CHECK(!t.context.empty(), file, ":", q.line, ": the question encodes to no tokens");
    for (size_t c = 0; c < q.choices.size(); ++c) {
      auto whole = tok.encode(context + mcq_continuation(q, c));
      UNDO_INPUT_CHECK(whole.size() > t.context.size(), file, ":", q.line, ": choice ", c,
                       " adds no tokens to the question's");
      t.choices.emplace_back(whole.begin() + long(t.context.size()), whole.end());
      t.choice_chars.push_back(int(code_points(q.choices[c]).size()));
    }
    out.push_back(std::move(t));
  }
  return out;
}

void tokenize_mcq_file(const std::string& data_dir, const std::string& questions, const std::string& out) {
  check_prepared_data(data_dir);
  auto tok = open_text_tokenizer(prepared_tokenizer(data_dir));
  write_mcq_tokens(out, tokenize_mcq(read_mcq_file(questions), *tok, questions));
}

}  // namespace undo
