#include "eval/evaluator.h"

#include <algorithm>

#include "core/error.h"
#include "core/fs.h"
#include "model/device.h"
#include "model/precision.h"

namespace undo {

double shard_ce(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16) {
  torch::NoGradGuard no_grad;
  int available = int((shard.size() - 1) / uint64_t(window));
  n_windows = std::min(n_windows, available);
  UNDO_CHECK(n_windows > 0, "shard '", shard.path(), "' is shorter than one window");
  double total = 0;
  for (int start = 0; start < n_windows; start += batch) {
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

std::vector<std::string> greedy_complete(Transformer& model, const Vocabulary& vocab,
                                         const std::vector<EvalPrompt>& ps, int max_new_tokens, bool bf16) {
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

JsonObject Evaluator::run(Transformer& model) {
  bool bf16 = cfg_.train.precision == "bf16";
  bool was_training = model->is_training();
  model->eval();
  JsonObject j;
  last_.clear();
  int n_windows = cfg_.eval.batches * cfg_.train.batch_size;
  std::map<std::string, double> ce;
  for (auto& [name, shard] : shards_) ce[name] = shard_ce(model, *shard, cfg_.model.seq_len, n_windows, cfg_.train.batch_size, bf16);
  auto mean_of = [&](const std::vector<std::string>& names) {
    double s = 0;
    for (auto& n : names) s += ce[n];
    return s / double(names.size());
  };
  last_["retain_ce"] = mean_of(retain_);
  last_["forget_ce"] = mean_of(forget_);
  for (auto& [name, v] : ce) last_["ce_" + name] = v;
  if (vocab_) {
    std::map<Op, double> acc_op;
    for (auto& [op, ps] : problems_) {
      auto gen = greedy_complete(model, *vocab_, ps, cfg_.eval.max_new_tokens, bf16);
      std::map<Format, std::pair<int, int>> per_format;
      int correct = 0;
      for (size_t i = 0; i < ps.size(); ++i) {
        bool ok = answer_correct(gen[i], ps[i].problem.answer);
        correct += ok;
        per_format[ps[i].problem.format].first += ok;
        per_format[ps[i].problem.format].second += 1;
      }
      acc_op[op] = double(correct) / double(ps.size());
      for (auto& [f, c] : per_format)
        last_[std::string("acc_") + op_name(op) + "_" + format_name(f)] = double(c.first) / c.second;
    }
    last_["retain_acc"] = (acc_op[Op::Add] + acc_op[Op::Sub]) / 2;
    last_["forget_acc"] = (acc_op[Op::Mul] + acc_op[Op::Div]) / 2;
  }
  // Headline metrics first, then the details, in a stable order.
  for (auto key : {"retain_ce", "forget_ce", "retain_acc", "forget_acc"})
    if (last_.count(key)) j.add(key, last_[key]);
  for (auto& [k, v] : last_)
    if (k != "retain_ce" && k != "forget_ce" && k != "retain_acc" && k != "forget_acc") j.add(k, v);
  if (was_training) model->train();
  return j;
}

}  // namespace undo
