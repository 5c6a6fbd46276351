// The layouts behind make_parallelism (train/parallelism.h), each in its own
// file: replicated (dist.zero 0 and 1, replicated_parallelism.cpp) and fully
// sharded (dist.zero 3, sharded_parallelism.cpp). Only the factory names them.
#pragma once
#include <memory>

#include "train/parallelism.h"

namespace undo {

// Every rank holds the whole model; `zero1`: each AdamW moment on one owner rank.
std::shared_ptr<Parallelism> replicated_parallelism(std::shared_ptr<Communicator> comm, const DistConfig& dist,
                                                    bool zero1);
// Every rank holds 1/N of each unit (distributed/zero3.h).
std::shared_ptr<Parallelism> sharded_parallelism(std::shared_ptr<Communicator> comm, const DistConfig& dist);

// Bytes of a tensor's elements (0 when undefined).
int64_t tensor_bytes(const torch::Tensor& t);
// Bytes of `training`'s gradients of `stepped` and of the optimizer's moments.
int64_t gradient_and_moment_bytes(const NamedTensors& stepped, const AdamW& optimizer);

}  // namespace undo
