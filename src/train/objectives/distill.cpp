#include "train/objectives/distill.h"

#include "core/error.h"
#include "model/device.h"

namespace undo {

namespace {

// The bucketed KL: the only passes over the vocabulary are the log-sum-exp
// and the softmax of the gradient. With q = softmax(x), s = q at the k ids,
// S = sum s, P = sum p_top and c = p_rest / (1 - S) (0 without a leftover bucket):
//   loss  = sum_k p_k (lt_k - log s_k) + p_rest (lt_rest - log(1 - S))
//   dx_j  = q_j (P - c S) + [j in top-k] (c s_j - p_j)
class TopKKlRows : public PositionLoss {
 public:
  TopKKlRows(const torch::Tensor& ids, const torch::Tensor& logp, const torch::Tensor& rest_logp)
      : ids_(ids.reshape({-1, ids.size(-1)})), logp_(logp.reshape({-1, logp.size(-1)})), rest_logp_(rest_logp.reshape({-1})) {}

  torch::Tensor sum(int64_t begin, const torch::Tensor& x, torch::Tensor* grad) const override {
    const int64_t n = x.size(0);
    auto ids = ids_.narrow(0, begin, n), logp = logp_.narrow(0, begin, n), rest_logp = rest_logp_.narrow(0, begin, n);
    auto lse = x.logsumexp(-1, /*keepdim=*/true);
    auto log_s = x.gather(-1, ids) - lse;
    auto s = log_s.exp();
    auto left = 1 - s.sum(-1);  // the student's mass outside the top-k
    auto p = logp.exp(), p_rest = rest_logp.exp();
    // A rest bucket counts where the teacher has leftover mass; the clamp only
    // guards a student whose k ids hold all of its mass to rounding.
    auto use_rest = (p_rest > 0).logical_and(left > 1e-30f);
    auto safe_left = left.clamp_min(1e-30f);
    auto rest_term = torch::where(use_rest, p_rest * (torch::where(use_rest, rest_logp, torch::zeros_like(rest_logp)) -
                                                      safe_left.log()),
                                  torch::zeros_like(p_rest));
    if (grad) {
      auto c = torch::where(use_rest, p_rest / safe_left, torch::zeros_like(p_rest));
      auto row = (p.sum(-1) - c * s.sum(-1)).unsqueeze(-1);
      *grad = (x - lse).exp_().mul_(row);  // out of place: x may be the caller's logits
      grad->scatter_add_(-1, ids, c.unsqueeze(-1) * s - p);
    }
    return ((p * (logp - log_s)).sum(-1) + rest_term).sum();
  }

 private:
  torch::Tensor ids_, logp_, rest_logp_;
};

// The sampled estimate of the full KL. The target is sparse: weight w = p at
// the k top ids and p_rest / s at each of the s draws from the leftover mass,
// or 1/s at each of s draws from the whole distribution (k = 0); a token drawn
// twice counts twice; lt is the teacher's log-prob there. With log q = x - lse(x), per position
//   loss = sum_t w_t (lt_t - log q_t)       E[loss] = KL(p || q)
//   dx_j = q_j W - sum_t w_t [id_t = j]     E[dx]   = q - p,  W = sum_t w_t
// since E over the draws of sum_draws (p_rest / s) f(j) = sum_{j outside} p_j f(j).
class SampledKlRows : public PositionLoss {
 public:
  SampledKlRows(const torch::Tensor& ids, const torch::Tensor& weights, const torch::Tensor& teacher_logp)
      : ids_(ids.reshape({-1, ids.size(-1)})),
        weights_(weights.reshape({-1, weights.size(-1)})),
        teacher_logp_(teacher_logp.reshape({-1, teacher_logp.size(-1)})) {}

  torch::Tensor sum(int64_t begin, const torch::Tensor& x, torch::Tensor* grad) const override {
    const int64_t n = x.size(0);
    auto ids = ids_.narrow(0, begin, n), w = weights_.narrow(0, begin, n), lt = teacher_logp_.narrow(0, begin, n);
    auto lse = x.logsumexp(-1, /*keepdim=*/true);
    if (grad) {
      *grad = (x - lse).exp_().mul_(w.sum(-1, /*keepdim=*/true));
      grad->scatter_add_(-1, ids, -w);
    }
    // A weightless draw (no leftover mass) may carry lt = -inf: it adds nothing.
    return torch::where(w > 0, w * (lt - (x.gather(-1, ids) - lse)), torch::zeros_like(w)).sum();
  }

 private:
  torch::Tensor ids_, weights_, teacher_logp_;
};

// The full-vocabulary KL(teacher || student). With p = softmax(t),
// q = softmax(x), per position
//   loss = sum_j p_j (t_j - x_j) - lse(t) + lse(x)      (sum_j p_j = 1)
//   dx_j = q_j - p_j
// so neither log-softmax is ever stored. The teacher's logits of rows
// [begin, begin + n) come from `teacher(begin, n)`: a slice of logits that
// exist whole, or a chunk made from the teacher's hidden state.
class FullKlRows : public PositionLoss {
 public:
  using TeacherLogits = std::function<torch::Tensor(int64_t begin, int64_t n)>;
  explicit FullKlRows(TeacherLogits teacher) : teacher_(std::move(teacher)) {}

  torch::Tensor sum(int64_t begin, const torch::Tensor& x, torch::Tensor* grad) const override {
    auto t = teacher_(begin, x.size(0)).to(torch::kFloat);
    auto lse_x = x.logsumexp(-1, /*keepdim=*/true), lse_t = t.logsumexp(-1, /*keepdim=*/true);
    auto p = (t - lse_t).exp_();
    if (grad) *grad = (x - lse_x).exp_().sub_(p);
    return (p * (t - x)).sum(-1).sum() + (lse_x - lse_t).sum();
  }

 private:
  TeacherLogits teacher_;
};

}  // namespace

std::shared_ptr<const PositionLoss> full_kl_loss(const torch::Tensor& teacher_logits) {
  auto flat = teacher_logits.reshape({-1, teacher_logits.size(-1)});
  return std::make_shared<FullKlRows>([flat](int64_t begin, int64_t n) { return flat.narrow(0, begin, n); });
}

namespace {

// The teacher's logits chunk by chunk from its final hidden state, as its forward would make them.
std::shared_ptr<const PositionLoss> kl_to_teacher_head(Transformer& teacher, const torch::Tensor& inputs) {
  torch::NoGradGuard no_grad;
  auto h = teacher->head_input(inputs);
  h = h.reshape({-1, h.size(-1)});
  auto weight = teacher->frozen_head_weight();
  const double softcap = teacher->cfg.softcap;
  return std::make_shared<FullKlRows>(
      [h, weight, softcap](int64_t begin, int64_t n) { return head_logits(h.narrow(0, begin, n), weight, softcap); });
}

}  // namespace

torch::Tensor forward_kl(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits) {
  return whole_logits_loss(student_logits, full_kl_loss(teacher_logits));
}

std::shared_ptr<const PositionLoss> cached_kl_loss(const TeacherTargets& teacher) {
  if (!teacher.tail_ids.defined()) return std::make_shared<TopKKlRows>(teacher.ids, teacher.logp, teacher.rest_logp);
  const int64_t s = teacher.tail_ids.size(-1);
  if (!teacher.ids.defined())  // pure sampling: the draws are the whole target
    return std::make_shared<SampledKlRows>(teacher.tail_ids, torch::full_like(teacher.tail_logp, 1.0 / double(s)),
                                           teacher.tail_logp);
  auto tail_w = (teacher.rest_logp.exp() / double(s)).unsqueeze(-1).expand_as(teacher.tail_logp);
  return std::make_shared<SampledKlRows>(torch::cat({teacher.ids, teacher.tail_ids}, -1),
                                         torch::cat({teacher.logp.exp(), tail_w}, -1),
                                         torch::cat({teacher.logp, teacher.tail_logp}, -1));
}

torch::Tensor cached_forward_kl(const TeacherTargets& teacher, const torch::Tensor& student_logits) {
  return whole_logits_loss(student_logits, cached_kl_loss(teacher));
}

torch::Tensor DistillStream::host_inputs(uint64_t first_row, int64_t count) const {
  const int T = mix->window();
  std::vector<int64_t> buf(size_t(count) * size_t(T + 1));
  for (int64_t i = 0; i < count; ++i) mix->sequence(seed, offset + first_row + uint64_t(i), &buf[size_t(i) * (T + 1)]);
  return torch::from_blob(buf.data(), {count, T + 1}, torch::kLong).narrow(1, 0, T).clone();
}

torch::Tensor DistillStream::inputs(uint64_t first_row, int64_t count) const {
  return to_compute_device(host_inputs(first_row, count));
}

torch::Tensor DistillStream::inputs(const MicroBatch& mb) const { return inputs(row(mb), mb.end - mb.begin); }

DistillObjective::DistillObjective(DistillStream stream, Transformer teacher)
    : stream_(std::move(stream)), teacher_(std::move(teacher)) {
  teacher_->eval();
  for (auto& p : teacher_->parameters()) p.requires_grad_(false);
}

DistillObjective::DistillObjective(DistillStream stream, std::shared_ptr<LogitCacheReader> cache)
    : stream_(std::move(stream)), cache_(std::move(cache)) {}

torch::Tensor DistillObjective::loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) {
  torch::Tensor kl;
  if (cache_) {
    torch::Tensor cached_tokens;
    auto targets = targets_of(cache_->read(stream_.row(mb), mb.end - mb.begin), cache_->key(), &cached_tokens);
    // The cache must hold this very stream: a different data dir fails here.
    // Compared on the host, where both are, so that a GPU step does not wait for it.
    auto host = stream_.host_inputs(stream_.row(mb), mb.end - mb.begin);
    UNDO_CHECK(torch::equal(cached_tokens, host), "logit cache rows ", stream_.row(mb),
               "+ hold other tokens than the distillation stream (data.dir changed since the cache was built?)");
    kl = model->forward_loss(to_compute_device(host), cached_kl_loss(targets));
  } else {
    auto inputs = stream_.inputs(mb);
    std::shared_ptr<const PositionLoss> loss;
    if (model->head_loss.chunked) {
      loss = kl_to_teacher_head(teacher_, inputs);
    } else {
      torch::NoGradGuard no_grad;
      loss = full_kl_loss(teacher_->forward(inputs));
    }
    teacher_tokens_ += inputs.numel();
    kl = model->forward_loss(inputs, loss);
  }
  add_log(logs, "kl", kl);
  return kl;
}

}  // namespace undo
