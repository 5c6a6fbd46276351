#include "train/zero3_state.h"

#include "core/error.h"
#include "train/checkpoint.h"

namespace undo {

void Zero3AdamWState::plan(std::vector<TensorEntry>& entries) const {
  add_tensor_entry(entries, "optimizer.step", torch::kLong, {});
  const auto& names = zero3_.parameter_names();
  for (const char* moment : {"optimizer.exp_avg.", "optimizer.exp_avg_sq."})
    for (size_t i = 0; i < names.size(); ++i)
      if (zero3_.trains(i))  // as zero 0 and 1 write it: moments of what trains only
        add_tensor_entry(entries, moment + names[i], torch::kFloat, zero3_.shape_of(i));
}

void Zero3AdamWState::save(CheckpointWriter& out) {
  out.put("optimizer.step", torch::tensor(adamw_.steps()));
  const auto& names = zero3_.parameter_names();
  for (auto [moments, prefix] : {std::make_pair(&adamw_.exp_avg(), "optimizer.exp_avg."),
                                 std::make_pair(&adamw_.exp_avg_sq(), "optimizer.exp_avg_sq.")})
    zero3_.for_each_whole(moments, [&](size_t i, const torch::Tensor& whole) {  // one unit gathered at a time
      if (zero3_.trains(i)) out.put(prefix + names[i], whole);
    });
}

void Zero3AdamWState::load(const CheckpointReader& in) {
  const int64_t step = in.read("optimizer.step").item<int64_t>();
  const auto& names = zero3_.parameter_names();
  std::vector<torch::Tensor> m, v;
  for (auto& t : adamw_.exp_avg()) m.push_back(torch::zeros_like(t));
  for (auto& t : adamw_.exp_avg_sq()) v.push_back(torch::zeros_like(t));
  for (auto [moments, prefix] : {std::make_pair(&m, "optimizer.exp_avg."), std::make_pair(&v, "optimizer.exp_avg_sq.")})
    zero3_.read_shards(moments, [&](size_t i, int64_t start, const torch::Tensor& dst) {
      if (zero3_.trains(i)) in.read_into(prefix + names[i], zero3_.shape_of(i), start, dst);  // else: no moments, 0
    });
  adamw_.set_state(step, m, v);
}

}  // namespace undo
