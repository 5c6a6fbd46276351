#include "eval/evaluator.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fs.h"
#include "eval/mcq_scorer.h"
#include "model/device.h"
#include "model/precision.h"

namespace undo {

std::vector<double> window_ces(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16,
                               const StopPoll& poll) {
  torch::NoGradGuard no_grad;
  int available = int((shard.size() - 1) / uint64_t(window));
  n_windows = std::min(n_windows, available);
  UNDO_CHECK(n_windows > 0, "shard '", shard.path(), "' is shorter than one window");
  std::vector<double> out;
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
    namespace F = torch::nn::functional;
    auto ce = F::cross_entropy(logits.reshape({-1, logits.size(-1)}), w.narrow(1, 1, window).reshape({-1}),
                               F::CrossEntropyFuncOptions().reduction(torch::kNone));
    auto per_window = ce.reshape({rows, window}).to(torch::kFloat).mean(1).to(torch::kCPU).to(torch::kDouble).contiguous();
    out.insert(out.end(), per_window.data_ptr<double>(), per_window.data_ptr<double>() + rows);
  }
  return out;
}

double shard_ce(Transformer& model, const Shard& shard, int window, int n_windows, int batch, bool bf16,
                const StopPoll& poll) {
  auto ces = window_ces(model, shard, window, n_windows, batch, bf16, poll);
  double total = 0;
  for (double v : ces) total += v;
  return total / double(ces.size());
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

namespace {

// A mean over strata of equal weight (streams, or operations) and its
// standard error, each stratum's from its own sample variance. The samples of
// one stratum are treated as independent: for text windows, which are
// consecutive, it is a lower bound. A NaN sample makes the mean NaN (a
// diverged model says so); samples that were not scored are left out by the
// caller (scored_only).
struct StratifiedMean {
  struct Stratum {
    double sum = 0, sumsq = 0;
    int n = 0;
  };
  std::vector<Stratum> strata;
  void add_stratum(const std::vector<double>& values) {
    Stratum s;
    for (double v : values) s.sum += v, s.sumsq += v * v, ++s.n;
    strata.push_back(s);
  }
  bool empty() const {
    for (auto& s : strata)
      if (s.n == 0) return true;
    return strata.empty();
  }
  double mean() const {
    double m = 0;
    for (auto& s : strata) m += s.sum / s.n;
    return m / double(strata.size());
  }
  double standard_error() const {
    double var = 0;
    for (auto& s : strata) {
      const double mu = s.sum / s.n, sample_var = s.n > 1 ? (s.sumsq - s.n * mu * mu) / (s.n - 1) : 0.0;
      var += std::max(0.0, sample_var) / s.n;
    }
    return std::sqrt(var) / double(strata.size());
  }
};

// Answer NLLs without those not scored (NaN: a problem longer than the window; as before, not finite).
std::vector<double> scored_only(const std::vector<double>& nll) {
  std::vector<double> out;
  for (double v : nll)
    if (std::isfinite(v)) out.push_back(v);
  return out;
}

// The operations a forget or retain figure averages over.
const std::vector<Op>& ops_of(bool forget) {
  static const std::vector<Op> retain = {Op::Add, Op::Sub}, forget_ops = {Op::Mul, Op::Div};
  return forget ? forget_ops : retain;
}

}  // namespace

Evaluator::Evaluator(const Config& cfg) : cfg_(cfg) {
  retain_ = split_list(cfg.data.retain_eval);
  forget_ = split_list(cfg.data.forget_eval);
  for (auto* list : {&retain_, &forget_})
    for (auto& s : *list)
      for (auto [split, shards] : {std::pair{".test", &test_shards_}, {".val", &val_shards_}}) {
        auto path = join_path(cfg.data.dir, s + split + ".bin");
        UNDO_INPUT_CHECK(file_exists(path), "evaluation stream '", s, "': '", path,
                         "' is missing (a preparation older than the validation and test splits: prepare the data "
                         "again)");
        if (!shards->count(s)) (*shards)[s] = std::make_unique<Shard>(path);
      }
  bool arith = test_shards_.count("addsub") || test_shards_.count("muldiv");
  if (arith && cfg.eval.arith_per_op > 0) {
    vocab_ = std::make_unique<Vocabulary>(join_path(cfg.data.dir, "vocab.bin"));
    problems_ = read_eval_prompts(join_path(cfg.data.dir, "eval_prompts.jsonl"), cfg.eval.arith_per_op, vocab_->size());
  }
  for (auto [side, file] : {std::pair{"forget", &cfg.data.forget_mcq}, {"retain", &cfg.data.retain_mcq}}) {
    if (file->empty()) continue;
    for (const char* split : {"val", "test"}) {
      const std::string path = mcq_tokens_path(cfg.data.dir, side, split);
      UNDO_INPUT_CHECK(file_exists(path), "data.", side, "_mcq = '", *file, "': '", path,
                       "' is missing (prepare the data again with it)");
      questions_[{side, split}] = read_mcq_tokens(path, int(cfg.model.vocab_size));
      check_mcq_fits(questions_[{side, split}], cfg.model.seq_len, "data." + std::string(side) + "_mcq = " + *file);
    }
  }
}

void Evaluator::score_questions(Transformer& model, const StopPoll& poll) {
  const bool bf16 = cfg_.train.precision == "bf16";
  for (auto& [where, questions] : questions_) {
    auto& [side, split] = where;
    McqScore s = score_mcq(questions, mcq_loglikelihoods(model, questions, bf16, poll));
    part_done();
    const std::string name = (split == "val" ? "val_" : "") + side + "_mcq_acc";
    last_[name] = s.acc;
    last_[name + "_norm"] = s.acc_norm;
    if (split == "test") last_["se_" + name] = s.acc_se, last_["se_" + name + "_norm"] = s.acc_norm_se;
  }
}

void Evaluator::score_text(Transformer& model, const StopPoll& poll) {
  const bool bf16 = cfg_.train.precision == "bf16";
  const int n_windows = cfg_.eval.batches * cfg_.train.batch_size;
  for (auto [test, shards] : {std::pair{true, &test_shards_}, {false, &val_shards_}}) {
    const std::string prefix = test ? "" : "val_";
    std::map<std::string, std::vector<double>> ces;
    for (auto& [name, shard] : *shards) {
      ces[name] = window_ces(model, *shard, cfg_.model.seq_len, n_windows, cfg_.train.batch_size, bf16, poll);
      part_done();
    }
    for (auto [figure, names] : {std::pair{"retain_ce", &retain_}, {"forget_ce", &forget_}}) {
      StratifiedMean m;
      for (auto& n : *names) m.add_stratum(ces[n]);
      last_[prefix + figure] = m.mean();
      if (test) last_["se_" + std::string(figure)] = m.standard_error();
    }
    if (test)
      for (auto& [name, v] : ces) {
        StratifiedMean m;
        m.add_stratum(v);
        last_["ce_" + name] = m.mean();
      }
  }
}

void Evaluator::score_problems(Transformer& model, ProblemSet set, const StopPoll& poll) {
  const bool bf16 = cfg_.train.precision == "bf16";
  // Per operation and format: 1/0 per problem, and answer NLLs. A problem
  // longer than the window cannot be answered (it counts as wrong) and is not
  // scored by answer CE (its NLL is NaN, which no mean takes in).
  std::map<Op, std::map<Format, std::vector<double>>> correct, nll;
  for (auto& [op, ps] : problems_.at(set)) {
    auto gen = greedy_complete(model, *vocab_, ps, cfg_.eval.max_new_tokens, bf16, poll);
    auto answer = answer_nll(model, vocab_->eos_id(), ps, bf16, poll);
    for (size_t i = 0; i < ps.size(); ++i) {
      const Format f = ps[i].problem.format;
      correct[op][f].push_back(answer_correct(gen[i], ps[i].problem.answer) ? 1.0 : 0.0);
      nll[op][f].push_back(answer[i]);
    }
    part_done();
  }
  // Names: the test set's as they are ("forget_acc"), validation's prefixed
  // ("val_forget_acc"), generalisation's with "gen" ("forget_gen_acc").
  const std::string prefix = set == ProblemSet::Validation ? "val_" : "";
  const std::string infix = set == ProblemSet::Generalisation ? "gen_" : "";
  auto pooled = [](const std::map<Format, std::vector<double>>& by_format) {
    std::vector<double> all;
    for (auto& [f, v] : by_format) all.insert(all.end(), v.begin(), v.end());
    return all;
  };
  for (bool forget : {false, true}) {
    const std::string side = forget ? "forget_" : "retain_";
    StratifiedMean acc, ce;
    for (Op op : ops_of(forget)) acc.add_stratum(pooled(correct[op])), ce.add_stratum(scored_only(pooled(nll[op])));
    last_[prefix + side + infix + "acc"] = acc.mean();
    if (!ce.empty()) last_[prefix + side + infix + "answer_ce"] = ce.mean();
    if (set != ProblemSet::Test) continue;
    last_["se_" + side + "acc"] = acc.standard_error();
    if (!ce.empty()) last_["se_" + side + "answer_ce"] = ce.standard_error();
  }
  if (set != ProblemSet::Test) return;
  for (auto& [op, by_format] : correct)
    for (auto& [f, values] : by_format) {
      const std::string name = std::string(op_name(op)) + "_" + format_name(f);
      StratifiedMean a, c;
      a.add_stratum(values), c.add_stratum(scored_only(nll[op][f]));
      last_["acc_" + name] = a.mean();
      if (!c.empty()) last_["answer_ce_" + name] = c.mean();
    }
}

int64_t Evaluator::parts() const {
  int64_t n = int64_t(test_shards_.size() + val_shards_.size() + questions_.size());
  if (vocab_)
    for (ProblemSet set : kScoredSets) n += int64_t(problems_.at(set).size());
  return n;
}

void Evaluator::part_done() {
  ++parts_done_;
  if (progress_) progress_->update(parts_done_);
}

JsonObject Evaluator::run(Transformer& model, const StopPoll& poll) {
  // The model goes back to its mode however this ends (a stop throws).
  struct ModeGuard {
    Transformer& m;
    bool training;
    ~ModeGuard() { m->train(training); }
  } mode{model, model->is_training()};
  model->eval();
  last_.clear();
  ProgressLine line("eval: scoring", parts(), "parts", progress_quiet_s_ >= 0, std::max(progress_quiet_s_, 0.0));
  progress_ = &line;
  struct Forget {  // the line ends with this run, a stop's throw included
    ProgressLine*& line;
    ~Forget() { line = nullptr; }
  } forget{progress_};
  parts_done_ = 0;
  score_text(model, poll);
  if (vocab_)
    for (ProblemSet set : kScoredSets) score_problems(model, set, poll);
  score_questions(model, poll);
  // Headline metrics first, then the details, in a stable order.
  const std::vector<std::string> headline = {"retain_ce",  "forget_ce",        "retain_acc",
                                             "forget_acc", "retain_answer_ce", "forget_answer_ce",
                                             "retain_mcq_acc", "forget_mcq_acc"};
  JsonObject j;
  for (auto& key : headline)
    if (last_.count(key)) j.add(key, last_[key]);
  for (auto& [k, v] : last_)
    if (std::find(headline.begin(), headline.end(), k) == headline.end()) j.add(k, v);
  return j;
}

}  // namespace undo
