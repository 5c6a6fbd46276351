// Distillation on outputs: forward KL(teacher || student) over the whole
// vocabulary, temperature 1, next-token positions, mean over tokens, no CE
// term (undo-spec.md). The teacher runs online, in the same step.
#pragma once
#include "train/objective.h"

namespace undo {

// KL(p_t || p_s) per position, averaged: sum_v p_t (log p_t - log p_s).
torch::Tensor forward_kl(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits);

class DistillObjective : public Objective {
 public:
  DistillObjective(std::shared_ptr<StreamMix> data, int window, Transformer teacher);
  torch::Tensor loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) override;
  int64_t tokens_per_row() const override { return window_; }
  int64_t teacher_tokens() const { return teacher_tokens_; }  // teacher forward tokens spent (this rank)

 private:
  std::shared_ptr<StreamMix> data_;
  int window_;
  Transformer teacher_;
  int64_t teacher_tokens_ = 0;
};

}  // namespace undo
