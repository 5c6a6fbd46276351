// Data-parallel gradient averaging: parameters are grouped into flat buckets
// (dist.bucket_mb); an autograd hook on each parameter copies its gradient
// into its bucket as backward produces it, and a full bucket's all-reduce is
// launched at once, overlapping communication with the rest of backward.
// finish() waits for all buckets and writes the averages into .grad.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "distributed/communicator.h"

namespace undo {

class GradReducer {
 public:
  GradReducer(std::vector<torch::Tensor> params, std::shared_ptr<Communicator> comm, double bucket_mb);
  ~GradReducer();
  // Only the last micro-batch of a step reduces; earlier ones just accumulate.
  void arm(bool reduce_this_backward);
  void finish();
  size_t num_buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> members;
    std::vector<int64_t> offsets;
    torch::Tensor flat;
    size_t ready = 0;
    Communicator::Pending pending;
  };
  void on_grad(size_t param, const torch::Tensor& grad);
  void launch(Bucket& b);

  std::vector<torch::Tensor> params_;
  std::vector<unsigned> hook_ids_;
  std::vector<size_t> bucket_of_, slot_of_;
  std::vector<bool> seen_;
  std::vector<Bucket> buckets_;
  std::shared_ptr<Communicator> comm_;
  bool armed_ = false;
};

}  // namespace undo
