#include "train/objective.h"

#include "model/device.h"
#include "train/fused_ce.h"

namespace undo {

torch::Tensor window_tensor(const StreamMix& mix, const MicroBatch& mb, int window) {
  auto rows = mix.batch(mb.seed, uint64_t(mb.step), mb.begin, mb.end);
  return torch::from_blob(rows.data(), {mb.end - mb.begin, window + 1}, torch::kLong).clone().to(compute_device());
}

torch::Tensor next_token_ce(Transformer& model, const torch::Tensor& windows) {
  auto T = windows.size(1) - 1;
  auto logits = model->forward(windows.narrow(1, 0, T));
  auto targets = windows.narrow(1, 1, T);
  return fused_cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}));
}

torch::Tensor CrossEntropyObjective::loss(Transformer& model, const MicroBatch& mb,
                                          std::map<std::string, double>*) {
  return next_token_ce(model, window_tensor(*data_, mb, window_));
}

}  // namespace undo
