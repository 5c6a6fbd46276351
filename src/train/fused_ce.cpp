#include "train/fused_ce.h"

#include "core/error.h"
#include "model/row_loops.h"

namespace undo {

torch::Tensor CrossEntropyRows::sum(int64_t begin, const torch::Tensor& x, torch::Tensor* grad) const {
  auto targets = targets_.narrow(0, begin, x.size(0)).unsqueeze(1);
  auto lse = torch::logsumexp(x, -1);
  if (grad) {  // softmax(x) - onehot(target). Out of place: x may be the caller's own logits.
    *grad = (x - lse.unsqueeze(1)).exp_();
    grad->scatter_add_(1, targets, torch::full({x.size(0), 1}, -1.0f, x.options()));
  }
  return (lse - x.gather(1, targets).squeeze(1)).sum();
}

torch::Tensor CrossEntropyRows::sum_of_products(int64_t begin, const torch::Tensor& z_in, double softcap,
                                                torch::Tensor* grad) const {
  if (softcap > 0 || !row_loops_take({z_in}) || !targets_.device().is_cpu())
    return PositionLoss::sum_of_products(begin, z_in, softcap, grad);
  auto z = z_in.contiguous();
  const int64_t n = z.size(0), V = z.size(1);
  auto targets = targets_.narrow(0, begin, n).to(torch::kLong).contiguous();
  // gather would refuse a target outside the vocabulary; the loop would read past its row.
  if (n > 0) {
    const auto [lo, hi] = torch::aminmax(targets);
    UNDO_CHECK(lo.item<int64_t>() >= 0 && hi.item<int64_t>() < V, "a cross-entropy target is outside the vocabulary [0, ",
               V, "): ", lo.item<int64_t>(), " .. ", hi.item<int64_t>());
  }
  auto losses = torch::empty({n}, z.options().dtype(torch::kFloat));
  if (grad) *grad = torch::empty_like(z);
  const auto dt = loop_dtype(z);
  parallel_rows(n, 3 * V, [&](int64_t first, int64_t last) {
    loops::cross_entropy_rows(dt, z.data_ptr(), V, targets.data_ptr<int64_t>(), first, last,
                              losses.data_ptr<float>(), grad ? grad->data_ptr() : nullptr);
  });
  return losses.sum();
}

torch::Tensor fused_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return whole_logits_loss(logits, std::make_shared<CrossEntropyRows>(targets));
}

}  // namespace undo
