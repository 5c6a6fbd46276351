#include "train/objective.h"

#include "model/device.h"
#include "train/fused_ce.h"

namespace undo {

void add_log(StepLogs* logs, const std::string& key, const torch::Tensor& value) {
  if (!logs) return;
  auto v = value.detach().to(torch::kFloat);
  auto it = logs->find(key);
  if (it == logs->end())
    logs->emplace(key, v);
  else
    it->second = it->second + v;
}

torch::Tensor window_tensor(const StreamMix& mix, const MicroBatch& mb, int window) {
  auto rows = mix.batch(mb.seed, uint64_t(mb.step), mb.begin, mb.end);
  return to_compute_device(torch::from_blob(rows.data(), {mb.end - mb.begin, window + 1}, torch::kLong).clone());
}

torch::Tensor next_token_ce(Transformer& model, const torch::Tensor& windows) {
  auto T = windows.size(1) - 1;
  return model->forward_loss(windows.narrow(1, 0, T), std::make_shared<CrossEntropyRows>(windows.narrow(1, 1, T)));
}

torch::Tensor CrossEntropyObjective::loss(Transformer& model, const MicroBatch& mb,
                                          StepLogs*) {
  return next_token_ce(model, window_tensor(*data_, mb, window_));
}

}  // namespace undo
