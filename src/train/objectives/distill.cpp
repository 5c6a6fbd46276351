#include "train/objectives/distill.h"

namespace undo {

torch::Tensor forward_kl(const torch::Tensor& teacher_logits, const torch::Tensor& student_logits) {
  auto log_t = torch::log_softmax(teacher_logits.to(torch::kFloat), -1);
  auto log_s = torch::log_softmax(student_logits.to(torch::kFloat), -1);
  return (log_t.exp() * (log_t - log_s)).sum(-1).mean();
}

DistillObjective::DistillObjective(std::shared_ptr<StreamMix> data, int window, Transformer teacher)
    : data_(std::move(data)), window_(window), teacher_(std::move(teacher)) {
  teacher_->eval();
  for (auto& p : teacher_->parameters()) p.requires_grad_(false);
}

torch::Tensor DistillObjective::loss(Transformer& model, const MicroBatch& mb, std::map<std::string, double>* logs) {
  // The inputs only: every position's next-token distribution is a target.
  auto inputs = window_tensor(*data_, mb, window_).narrow(1, 0, window_);
  torch::Tensor teacher_logits;
  {
    torch::NoGradGuard no_grad;
    teacher_logits = teacher_->forward(inputs);
  }
  teacher_tokens_ += inputs.numel();
  auto kl = forward_kl(teacher_logits, model->forward(inputs));
  if (logs) (*logs)["kl"] += kl.item<double>();
  return kl;
}

}  // namespace undo
