// Distillation on outputs: forward KL(teacher || student), temperature 1,
// every next-token position, mean over tokens, no CE term (undo-spec.md).
// The teacher's distribution comes either from the teacher itself, run in the
// same step (online), or from a logit cache (cached). From a cache of top-k
// without samples, the k log-probs plus the leftover mass as one more bucket
// form the target (a lower bound of the full KL); with s draws from the
// leftover mass (or from the whole distribution, k = 0), each carries 1/s of
// the mass it was drawn from, and the gradient is an unbiased estimate of the
// full KL's (docs/LOGIT_CACHE.md derives it).
#pragma once
#include "cache/logit_cache.h"
#include "train/teacher_targets.h"
#include "train/objective.h"

namespace undo {

// KL(p_t || p_s) per position, averaged: sum_v p_t (log p_t - log p_s).
torch::Tensor forward_kl(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits);

// The cached loss: KL over the k + 1 buckets (top-k ids, everything else)
// without samples; with them, the estimate of the full KL whose gradient is
// unbiased (each draw weighs 1/s of the mass it was drawn from). Averaged over positions.
torch::Tensor cached_forward_kl(const TeacherTargets& teacher, const torch::Tensor& student_logits);
// The same losses for Transformer::forward_loss (model/head_loss.h): the
// full KL to teacher logits [.., V] that exist whole, and the cached one.
std::shared_ptr<const PositionLoss> full_kl_loss(const torch::Tensor& teacher_logits);
std::shared_ptr<const PositionLoss> cached_kl_loss(const TeacherTargets& teacher);

// The distillation stream: its windows are numbered (StreamMix::sequence), the
// row r of step s's global batch being sequence offset + s * global_batch + r,
// whatever the world size, so that row n of a cache serves any student.
struct DistillStream {
  std::shared_ptr<StreamMix> mix;
  uint64_t seed = 0, offset = 0;
  int64_t global_batch = 0;
  uint64_t row(const MicroBatch& mb) const { return uint64_t(mb.step) * uint64_t(global_batch) + uint64_t(mb.begin); }
  // Input tokens of the micro-batch's rows [B, window].
  torch::Tensor inputs(const MicroBatch& mb) const;
  torch::Tensor inputs(uint64_t first_row, int64_t count) const;  // on the compute device
  torch::Tensor host_inputs(uint64_t first_row, int64_t count) const;
};

class DistillObjective : public Objective {
 public:
  DistillObjective(DistillStream stream, Transformer teacher);                      // online teacher
  DistillObjective(DistillStream stream, std::shared_ptr<LogitCacheReader> cache);  // cached teacher
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, StepLogs* logs) override;
  int64_t tokens_per_row() const override { return stream_.mix->window(); }
  int64_t teacher_tokens() const { return teacher_tokens_; }  // teacher forward tokens spent here (this rank)

 private:
  DistillStream stream_;
  Transformer teacher_{nullptr};
  std::shared_ptr<LogitCacheReader> cache_;
  int64_t teacher_tokens_ = 0;
};

}  // namespace undo
