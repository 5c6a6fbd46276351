#include "eval/evaluator.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fs.h"
#include "model/device.h"
#include "model/precision.h"

namespace undo {

double shard_ce(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16,
                const StopPoll& poll) {
  torch::NoGradGuard no_grad;
  int available = int((shard.size() - 1) / uint64_t(window));
  n_windows = std::min(n_windows, available);
  UNDO_CHECK(n_windows > 0, "shard '", shard.path(), "' is shorter than one window");
  double total = 0;
  for (int start = 0; start < n_windows; start += batch) {
    stop_point(poll);
    int rows = std::min(batch, n_windows - start);
    std::vector<int64_t> buf(size_t(rows) * size_t(window + 1));
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i <= window; ++i)
        buf[size_t(r) * (window + 1) + size_t(i)] = shard[uint64_t(start + r) * uint64_t(window) + uint64_t(i)];
    auto w = torch::from_blob(buf.data(), {rows, window + 1}, torch::kLong).to(compute_device());
    AutocastGuard autocast(bf16, computing_on_cuda());
    auto logits = model->forward(w.narrow(1, 0, window));
    auto ce = torch::nn::functional::cross_entropy(logits.reshape({-1, logits.size(-1)}),
                                                   w.narrow(1, 1, window).reshape({-1}));
    total += ce.item<double>() * rows;
  }
  return total / n_windows;
}

bool answer_correct(const std::string& generated, long answer) {
  long v;
  return parse_first_number(generated, &v) && v == answer;
}

std::vector<double> answer_nll(Transformer& model, int eos_id, const std::vector<EvalPrompt>& ps, bool bf16,
                               const StopPoll& poll) {
  torch::NoGradGuard no_grad;
  std::vector<double> out(ps.size(), NAN);
  // Separator, prompt, answer; grouped by length so that no batch needs padding.
  std::map<std::pair<size_t, size_t>, std::vector<size_t>> by_shape;  // (prompt + 1, answer) lengths
  for (size_t i = 0; i < ps.size(); ++i) by_shape[{ps[i].ids.size() + 1, ps[i].answer_ids.size()}].push_back(i);
  for (auto& [shape, idx] : by_shape) {
    auto [head, tail] = shape;
    if (int64_t(head + tail) > model->cfg.seq_len + 1) continue;  // does not fit the window: left NaN
    stop_point(poll);
    std::vector<int64_t> buf;
    for (size_t i : idx) {
      buf.push_back(eos_id);
      buf.insert(buf.end(), ps[i].ids.begin(), ps[i].ids.end());
      buf.insert(buf.end(), ps[i].answer_ids.begin(), ps[i].answer_ids.end());
    }
    const int64_t n = int64_t(idx.size()), len = int64_t(head + tail);
    auto seq = torch::from_blob(buf.data(), {n, len}, torch::kLong).clone().to(compute_device());
    torch::Tensor logits;
    {
      AutocastGuard autocast(bf16, computing_on_cuda());
      logits = model->forward(seq.narrow(1, 0, len - 1));
    }
    // Positions head-1 .. len-2 predict the answer's tokens.
    auto logp = torch::log_softmax(logits.narrow(1, int64_t(head) - 1, int64_t(tail)).to(torch::kFloat), -1);
    auto target = seq.narrow(1, int64_t(head), int64_t(tail)).unsqueeze(-1);
    auto nll = (-logp.gather(-1, target)).squeeze(-1).sum(1).to(torch::kCPU).to(torch::kDouble).contiguous();
    for (int64_t r = 0; r < n; ++r) out[idx[size_t(r)]] = nll.data_ptr<double>()[r];
  }
  return out;
}

std::vector<std::string> greedy_complete(Transformer& model, const Vocabulary& vocab,
                                         const std::vector<EvalPrompt>& ps, int max_new_tokens, bool bf16,
                                         const StopPoll& poll) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> out(ps.size());
  // Group prompts by token length so that each batch needs no padding.
  std::map<size_t, std::vector<size_t>> by_len;
  std::vector<std::vector<int>> prompts(ps.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    prompts[i] = ps[i].ids;
    prompts[i].insert(prompts[i].begin(), vocab.eos_id());
    by_len[prompts[i].size()].push_back(i);
  }
  for (auto& [len, idx] : by_len) {
    int64_t room = std::min<int64_t>(max_new_tokens, model->cfg.seq_len - int64_t(len));
    if (room <= 0) continue;
    std::vector<int64_t> buf;
    for (size_t i : idx) buf.insert(buf.end(), prompts[i].begin(), prompts[i].end());
    auto seq = torch::from_blob(buf.data(), {int64_t(idx.size()), int64_t(len)}, torch::kLong).clone().to(compute_device());
    for (int64_t t = 0; t < room; ++t) {
      stop_point(poll);
      AutocastGuard autocast(bf16, computing_on_cuda());
      auto logits = model->forward(seq);
      auto next = logits.select(1, seq.size(1) - 1).argmax(-1, true);
      seq = torch::cat({seq, next}, 1);
    }
    auto gen = seq.narrow(1, int64_t(len), room).to(torch::kCPU).contiguous();
    auto acc = gen.accessor<int64_t, 2>();
    for (size_t r = 0; r < idx.size(); ++r) {
      std::vector<int> ids;
      for (int64_t t = 0; t < room && acc[int64_t(r)][t] != vocab.eos_id(); ++t) ids.push_back(int(acc[int64_t(r)][t]));
      out[idx[r]] = vocab.decode(ids);
    }
  }
  return out;
}

Evaluator::Evaluator(const Config& cfg) : cfg_(cfg) {
  retain_ = split_list(cfg.data.retain_eval);
  forget_ = split_list(cfg.data.forget_eval);
  for (auto* list : {&retain_, &forget_})
    for (auto& s : *list) {
      auto path = join_path(cfg.data.dir, s + ".val.bin");
      UNDO_INPUT_CHECK(file_exists(path), "evaluation stream '", s, "': '", path, "' is missing");
      if (!shards_.count(s)) shards_[s] = std::make_unique<Shard>(path);
    }
  bool arith = shards_.count("addsub") || shards_.count("muldiv");
  if (arith && cfg.eval.arith_per_op > 0) {
    vocab_ = std::make_unique<Vocabulary>(join_path(cfg.data.dir, "vocab.bin"));
    problems_ = read_eval_prompts(join_path(cfg.data.dir, "eval_prompts.jsonl"), cfg.eval.arith_per_op, vocab_->size());
  }
}

JsonObject Evaluator::run(Transformer& model, const StopPoll& poll) {
  bool bf16 = cfg_.train.precision == "bf16";
  // The model goes back to its mode however this ends (a stop throws).
  struct ModeGuard {
    Transformer& m;
    bool training;
    ~ModeGuard() { m->train(training); }
  } mode{model, model->is_training()};
  model->eval();
  JsonObject j;
  last_.clear();
  int n_windows = cfg_.eval.batches * cfg_.train.batch_size;
  std::map<std::string, double> ce;
  for (auto& [name, shard] : shards_) ce[name] = shard_ce(model, *shard, cfg_.model.seq_len, n_windows, cfg_.train.batch_size, bf16, poll);
  auto mean_of = [&](const std::vector<std::string>& names) {
    double s = 0;
    for (auto& n : names) s += ce[n];
    return s / double(names.size());
  };
  last_["retain_ce"] = mean_of(retain_);
  last_["forget_ce"] = mean_of(forget_);
  for (auto& [name, v] : ce) last_["ce_" + name] = v;
  if (vocab_) {
    std::map<Op, double> acc_op, nll_op;
    for (auto& [op, ps] : problems_) {
      auto gen = greedy_complete(model, *vocab_, ps, cfg_.eval.max_new_tokens, bf16, poll);
      auto nll = answer_nll(model, vocab_->eos_id(), ps, bf16, poll);
      // A problem longer than the window cannot be answered (it counts as
      // wrong) and is not scored by answer CE (no NaN enters a mean).
      struct Tally {
        int correct = 0, n = 0, scored = 0;
        double nll = 0;
      };
      std::map<Format, Tally> per_format;
      Tally all;
      for (size_t i = 0; i < ps.size(); ++i) {
        bool ok = answer_correct(gen[i], ps[i].problem.answer), fits = std::isfinite(nll[i]);
        for (Tally* t : {&all, &per_format[ps[i].problem.format]})
          t->correct += ok, t->n += 1, t->scored += fits, t->nll += fits ? nll[i] : 0.0;
      }
      acc_op[op] = double(all.correct) / all.n;
      nll_op[op] = all.scored ? all.nll / all.scored : NAN;
      for (auto& [f, t] : per_format) {
        std::string name = std::string(op_name(op)) + "_" + format_name(f);
        last_["acc_" + name] = double(t.correct) / t.n;
        if (t.scored) last_["answer_ce_" + name] = t.nll / t.scored;
      }
    }
    last_["retain_acc"] = (acc_op[Op::Add] + acc_op[Op::Sub]) / 2;
    last_["forget_acc"] = (acc_op[Op::Mul] + acc_op[Op::Div]) / 2;
    for (auto [name, a, b] : {std::tuple{"retain_answer_ce", Op::Add, Op::Sub}, {"forget_answer_ce", Op::Mul, Op::Div}})
      if (std::isfinite(nll_op[a] + nll_op[b])) last_[name] = (nll_op[a] + nll_op[b]) / 2;
  }
  // Headline metrics first, then the details, in a stable order.
  const std::vector<std::string> headline = {"retain_ce",  "forget_ce",        "retain_acc",
                                             "forget_acc", "retain_answer_ce", "forget_answer_ce"};
  for (auto& key : headline)
    if (last_.count(key)) j.add(key, last_[key]);
  for (auto& [k, v] : last_)
    if (std::find(headline.begin(), headline.end(), k) == headline.end()) j.add(k, v);
  return j;
}

}  // namespace undo
