#include "train/objectives/distill.h"

#include "core/error.h"
#include "model/device.h"

namespace undo {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The bucketed KL as one autograd node, like fused_cross_entropy: the only
// passes over the vocabulary are the forward's log-sum-exp and the backward's
// softmax. With q = softmax(x), s = q at the k ids, S = sum s, P = sum p_top
// and c = p_rest / (1 - S) (0 without a leftover bucket):
//   loss  = sum_k p_k (lt_k - log s_k) + p_rest (lt_rest - log(1 - S))
//   dx_j  = q_j (P - c S) + [j in top-k] (c s_j - p_j)
struct FusedTopKKl : torch::autograd::Function<FusedTopKKl> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& ids,
                               const torch::Tensor& logp, const torch::Tensor& rest_logp) {
    auto x = logits.to(torch::kFloat);
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
    auto per_pos = (p * (logp - log_s)).sum(-1) + rest_term;
    auto c = torch::where(use_rest, p_rest / safe_left, torch::zeros_like(p_rest));
    ctx->save_for_backward({x, lse, ids, p, s, c});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    return per_pos.mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto v = ctx->get_saved_variables();
    auto x = v[0], lse = v[1], ids = v[2], p = v[3], s = v[4], c = v[5];
    double positions = double(x.numel() / x.size(-1));
    auto scale = grad_out[0].to(torch::kFloat) / positions;  // a tensor: no host synchronisation
    auto row = (p.sum(-1) - c * s.sum(-1)).unsqueeze(-1);
    auto grad = (x - lse).exp_().mul_(row);  // out of place: x may be the caller's logits
    grad.scatter_add_(-1, ids, c.unsqueeze(-1) * s - p);
    grad.mul_(scale);
    auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The sampled estimate of the full KL as one autograd node. The target is
// sparse: weight w = p at the k top ids and p_rest / s at each of the s draws
// from the leftover mass, or 1/s at each of s draws from the whole distribution
// (k = 0); a token drawn twice counts twice; lt is the teacher's log-prob there. With log q = x - lse(x), per position
//   loss = sum_t w_t (lt_t - log q_t)       E[loss] = KL(p || q)
//   dx_j = q_j W - sum_t w_t [id_t = j]     E[dx]   = q - p,  W = sum_t w_t
// since E over the draws of sum_draws (p_rest / s) f(j) = sum_{j outside} p_j f(j).
struct FusedSampledKl : torch::autograd::Function<FusedSampledKl> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& ids,
                               const torch::Tensor& weights, const torch::Tensor& teacher_logp) {
    auto x = logits.to(torch::kFloat);
    auto lse = x.logsumexp(-1, /*keepdim=*/true);
    auto log_q = x.gather(-1, ids) - lse;
    // A weightless draw (no leftover mass) may carry lt = -inf: it adds nothing.
    auto terms = torch::where(weights > 0, weights * (teacher_logp - log_q), torch::zeros_like(weights));
    ctx->save_for_backward({x, lse, ids, weights});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    return terms.sum(-1).mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto v = ctx->get_saved_variables();
    auto x = v[0], lse = v[1], ids = v[2], w = v[3];
    auto scale = grad_out[0].to(torch::kFloat) / double(x.numel() / x.size(-1));
    auto grad = (x - lse).exp_().mul_(w.sum(-1, /*keepdim=*/true));
    grad.scatter_add_(-1, ids, -w);
    grad.mul_(scale);
    auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The full-vocabulary KL(teacher || student) as one autograd node. With
// p = softmax(t), q = softmax(x), per position
//   loss = sum_j p_j (t_j - x_j) - lse(t) + lse(x)      (sum_j p_j = 1)
//   dx_j = q_j - p_j
// so neither log-softmax is ever stored: the node keeps the two logit tensors
// it was given (no copies when they are fp32 already) and their log-sum-exps,
// and the backward writes the gradient into one fresh [.., V] buffer.
struct FusedFullKl : torch::autograd::Function<FusedFullKl> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& student_logits,
                               const torch::Tensor& teacher_logits) {
    auto x = student_logits.to(torch::kFloat), t = teacher_logits.to(torch::kFloat);
    auto lse_x = x.logsumexp(-1, /*keepdim=*/true), lse_t = t.logsumexp(-1, /*keepdim=*/true);
    auto p = (t - lse_t).exp_();
    auto per_pos = p.mul_(t - x).sum(-1) - lse_t.squeeze(-1) + lse_x.squeeze(-1);
    ctx->save_for_backward({x, t, lse_x, lse_t});
    ctx->saved_data["dtype"] = static_cast<int64_t>(student_logits.scalar_type());
    return per_pos.mean();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto v = ctx->get_saved_variables();
    auto x = v[0], t = v[1], lse_x = v[2], lse_t = v[3];
    auto scale = grad_out[0].to(torch::kFloat) / double(x.numel() / x.size(-1));
    auto grad = (x - lse_x).exp_();
    grad.sub_((t - lse_t).exp_()).mul_(scale);
    auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor forward_kl(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits) {
  return FusedFullKl::apply(student_logits, teacher_logits);
}

torch::Tensor cached_forward_kl(const TeacherTargets& teacher, const torch::Tensor& student_logits) {
  if (!teacher.tail_ids.defined())
    return FusedTopKKl::apply(student_logits, teacher.ids, teacher.logp, teacher.rest_logp);
  const int64_t s = teacher.tail_ids.size(-1);
  if (!teacher.ids.defined())  // pure sampling: the draws are the whole target
    return FusedSampledKl::apply(student_logits, teacher.tail_ids, torch::full_like(teacher.tail_logp, 1.0 / double(s)),
                                 teacher.tail_logp);
  auto tail_w = (teacher.rest_logp.exp() / double(s)).unsqueeze(-1).expand_as(teacher.tail_logp);
  return FusedSampledKl::apply(student_logits, torch::cat({teacher.ids, teacher.tail_ids}, -1),
                               torch::cat({teacher.logp.exp(), tail_w}, -1),
                               torch::cat({teacher.logp, teacher.tail_logp}, -1));
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
    kl = cached_forward_kl(targets, model->forward(to_compute_device(host)));
  } else {
    auto inputs = stream_.inputs(mb);
    torch::Tensor teacher_logits;
    {
      torch::NoGradGuard no_grad;
      teacher_logits = teacher_->forward(inputs);
    }
    teacher_tokens_ += inputs.numel();
    kl = forward_kl(teacher_logits, model->forward(inputs));
  }
  add_log(logs, "kl", kl);
  return kl;
}

}  // namespace undo
