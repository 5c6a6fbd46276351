#include "eval/mcq_scorer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/progress_line.h"
#include "core/error.h"
#include "model/device.h"
#include "model/precision.h"

namespace undo {
namespace {

constexpr size_t kRowsPerBatch = 64;  // bounds a batch's logits (rows x window x vocabulary)

// One choice to score: the tokens the model reads, and how many of the last
// targets are the choice's.
struct Row {
  size_t question, choice;
  std::vector<int64_t> tokens;  // input and targets: tokens[0..n-2] in, tokens[1..n-1] out
  size_t scored;
};

Row row_of(const McqTokens& q, size_t question, size_t choice, int64_t window) {
  const auto& cont = q.choices[choice];
  UNDO_CHECK(int64_t(cont.size()) <= window, "question at line ", q.line, ": choice ", choice,
             " is longer than the window (check_mcq_fits)");
  std::vector<int64_t> all(q.context.begin(), q.context.end());
  all.insert(all.end(), cont.begin(), cont.end());
  // The harness keeps the last max_length + 1 tokens: the window's inputs and one more target.
  if (int64_t(all.size()) > window + 1) all.erase(all.begin(), all.end() - (window + 1));
  return {question, choice, std::move(all), cont.size()};
}

// The summed log-probability of the scored targets of rows that share a shape.
std::vector<double> score_rows(Transformer& model, const std::vector<const Row*>& rows, bool bf16) {
  const int64_t n = int64_t(rows.size()), len = int64_t(rows[0]->tokens.size()), tail = int64_t(rows[0]->scored);
  std::vector<int64_t> buf;
  for (auto* r : rows) buf.insert(buf.end(), r->tokens.begin(), r->tokens.end());
  auto seq = torch::from_blob(buf.data(), {n, len}, torch::kLong).clone().to(compute_device());
  torch::Tensor logits;
  {
    AutocastGuard autocast(bf16, computing_on_cuda());
    logits = model->forward(seq.narrow(1, 0, len - 1));
  }
  auto logp = torch::log_softmax(logits.narrow(1, len - 1 - tail, tail).to(torch::kFloat), -1);
  auto target = seq.narrow(1, len - tail, tail).unsqueeze(-1);
  auto ll = logp.gather(-1, target).squeeze(-1).sum(1).to(torch::kCPU).to(torch::kDouble).contiguous();
  return std::vector<double>(ll.data_ptr<double>(), ll.data_ptr<double>() + n);
}

int first_max(const std::vector<double>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }

// The mean of 0/1 outcomes and the harness's standard error of it.
std::pair<double, double> mean_and_se(const std::vector<int>& hits) {
  const double n = double(hits.size());
  double sum = 0;
  for (int h : hits) sum += h;
  const double mean = sum / n;
  if (hits.size() < 2) return {mean, 0.0};
  double ss = 0;
  for (int h : hits) ss += (h - mean) * (h - mean);
  return {mean, std::sqrt(ss / (n - 1)) / std::sqrt(n)};
}

}  // namespace

void check_mcq_fits(const std::vector<McqTokens>& questions, int64_t window, const std::string& file) {
  for (auto& q : questions)
    for (size_t c = 0; c < q.choices.size(); ++c)
      UNDO_INPUT_CHECK(int64_t(q.choices[c].size()) <= window, file, ":", q.line, ": choice ", c, " is ",
                       q.choices[c].size(), " tokens, longer than the model's window of ", window,
                       " (model.seq_len): no model of that window can score it");
}

std::vector<std::vector<double>> mcq_loglikelihoods(Transformer& model, const std::vector<McqTokens>& questions,
                                                    bool bf16, const StopPoll& poll, bool progress) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<Row> rows;
  for (size_t q = 0; q < questions.size(); ++q)
    for (size_t c = 0; c < questions[q].choices.size(); ++c)
      rows.push_back(row_of(questions[q], q, c, model->cfg.seq_len));
  // Grouped by shape, so that no batch needs padding.
  std::map<std::pair<size_t, size_t>, std::vector<const Row*>> by_shape;
  for (auto& r : rows) by_shape[{r.tokens.size(), r.scored}].push_back(&r);
  std::vector<std::vector<double>> out(questions.size());
  for (size_t q = 0; q < questions.size(); ++q) out[q].assign(questions[q].choices.size(), NAN);
  ProgressLine line("eval: scoring", int64_t(rows.size()), "choices", progress);
  int64_t scored = 0;
  for (auto& [shape, group] : by_shape)
    for (size_t at = 0; at < group.size(); at += kRowsPerBatch) {
      stop_point(poll);
      line.update(scored);
      std::vector<const Row*> batch(group.begin() + long(at), group.begin() + long(std::min(group.size(), at + kRowsPerBatch)));
      auto ll = score_rows(model, batch, bf16);
      for (size_t i = 0; i < batch.size(); ++i) out[batch[i]->question][batch[i]->choice] = ll[i];
      scored += int64_t(batch.size());
    }
  line.update(scored);
  return out;
}

McqScore score_mcq(const std::vector<McqTokens>& questions, const std::vector<std::vector<double>>& lls) {
  UNDO_CHECK(lls.size() == questions.size() && !questions.empty(), "score_mcq: ", lls.size(), " scores for ",
             questions.size(), " questions");
  McqScore s;
  s.questions = int(questions.size());
  std::vector<int> hit, hit_norm;
  for (size_t q = 0; q < questions.size(); ++q) {
    std::vector<double> per_char(lls[q].size());
    for (size_t c = 0; c < per_char.size(); ++c) per_char[c] = lls[q][c] / double(questions[q].choice_chars[c]);
    s.chosen.push_back(first_max(lls[q]));
    s.chosen_norm.push_back(first_max(per_char));
    hit.push_back(s.chosen.back() == questions[q].answer);
    hit_norm.push_back(s.chosen_norm.back() == questions[q].answer);
  }
  std::tie(s.acc, s.acc_se) = mean_and_se(hit);
  std::tie(s.acc_norm, s.acc_norm_se) = mean_and_se(hit_norm);
  return s;
}

}  // namespace undo
