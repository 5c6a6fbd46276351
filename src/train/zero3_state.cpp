#include "train/zero3_state.h"

#include "core/error.h"

namespace undo {

void Zero3AdamWState::save(torch::serialize::OutputArchive& archive) {
  archive.write("step", torch::tensor(adamw_.steps()));
  auto m = zero3_.full_tensors(adamw_.exp_avg());
  auto v = zero3_.full_tensors(adamw_.exp_avg_sq());
  const auto& names = zero3_.parameter_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if (!zero3_.trains(i)) continue;  // as zero 0 and 1 write it: moments of what trains only
    archive.write("exp_avg." + names[i], m[i].to(torch::kCPU).clone());
    archive.write("exp_avg_sq." + names[i], v[i].to(torch::kCPU).clone());
  }
}

void Zero3AdamWState::load(torch::serialize::InputArchive& archive) {
  torch::Tensor step;
  archive.read("step", step);
  const auto& names = zero3_.parameter_names();
  std::vector<torch::Tensor> m(names.size()), v(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    if (!zero3_.trains(i)) {  // no moments: its gradient is always 0
      m[i] = v[i] = torch::zeros(zero3_.shape_of(i));
      continue;
    }
    UNDO_CHECK(archive.try_read("exp_avg." + names[i], m[i]) && archive.try_read("exp_avg_sq." + names[i], v[i]),
               "optimizer state lacks parameter ", names[i]);
  }
  adamw_.set_state(step.item<int64_t>(), zero3_.shards_of(m), zero3_.shards_of(v));
}

}  // namespace undo
