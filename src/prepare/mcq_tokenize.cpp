#include "prepare/mcq_tokenize.h"

#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "core/fs.h"
#include "core/utf8.h"
#include "data/prepared_check.h"
#include "data/stream.h"
#include "prepare/corpus_files.h"

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

namespace {

std::vector<std::pair<std::string, std::string>> mcq_metrics(const DataConfig& d) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!d.forget_mcq.empty()) out.emplace_back("forget", d.forget_mcq);
  if (!d.retain_mcq.empty()) out.emplace_back("retain", d.retain_mcq);
  return out;
}

}  // namespace

void check_mcq_metrics(const DataConfig& d) {
  for (auto& [side, file] : mcq_metrics(d)) {
    const auto questions = read_mcq_file(file);
    UNDO_INPUT_CHECK(questions.size() >= 2, "data.", side, "_mcq = '", file,
                     "' holds one question: validation and test need one each");
    for (auto& list : {d.english_dirs, d.forget_dirs})
      for (auto& entry : split_list(list))
        UNDO_INPUT_CHECK(!std::filesystem::exists(corpus_path(entry)) ||
                             !std::filesystem::equivalent(corpus_path(entry), file),
                         "data.", side, "_mcq = '", file, "' is also the training corpus '", entry,
                         "': its questions would be scored after training on their answers");
  }
}

void write_mcq_metrics(const DataConfig& d, uint64_t seed, const TextTokenizer& tok, const std::string& out) {
  for (auto& [side, file] : mcq_metrics(d)) {
    auto tokens = tokenize_mcq(read_mcq_file(file), tok, file);
    std::vector<McqTokens> val, test;
    for (size_t i = 0; i < tokens.size(); ++i)
      (splitmix64(seed ^ splitmix64(i + 0x6d6371)) & 1 ? test : val).push_back(tokens[i]);
    if (val.empty()) val.push_back(test.back()), test.pop_back();
    if (test.empty()) test.push_back(val.back()), val.pop_back();
    write_mcq_tokens(mcq_tokens_path(out, side, "val"), val);
    write_mcq_tokens(mcq_tokens_path(out, side, "test"), test);
    std::cerr << "data: " << side << " questions (" << file << "): " << val.size() << " validation, " << test.size()
              << " test\n";
  }
}

void tokenize_mcq_file(const std::string& data_dir, const std::string& questions, const std::string& out) {
  check_prepared_data(data_dir);
  auto tok = open_text_tokenizer(prepared_tokenizer(data_dir));
  write_mcq_tokens(out, tokenize_mcq(read_mcq_file(questions), *tok, questions));
}

}  // namespace undo
