// Running model/vector_loops.h's loops on tensors: which tensors they take,
// their element type, and the split of their rows over ATen's threads. Every
// kernel built on them (model/block_kernels.h, train/fused_ce.h) keeps an ATen
// path for what they do not take (GPUs, other types), so a caller never asks.
#pragma once
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <initializer_list>

#include "core/error.h"
#include "model/vector_loops.h"

namespace undo {

// Whether the loops run on these tensors: on the CPU, in fp32 or bf16, all of
// one type. (They copy a non-contiguous input to a contiguous one first.)
inline bool row_loops_take(std::initializer_list<torch::Tensor> tensors) {
  for (const auto& t : tensors)
    if (!t.defined() || !t.device().is_cpu() || t.scalar_type() != tensors.begin()->scalar_type()) return false;
  const auto type = tensors.begin()->scalar_type();
  return type == torch::kFloat || type == torch::kBFloat16;
}

inline loops::Dtype loop_dtype(const torch::Tensor& t) {
  UNDO_CHECK(t.scalar_type() == torch::kFloat || t.scalar_type() == torch::kBFloat16,
             "the vector loops take fp32 or bf16, not ", t.scalar_type());
  return t.scalar_type() == torch::kFloat ? loops::Dtype::f32 : loops::Dtype::bf16;
}

// fn(begin, end) over [0, rows) on ATen's threads, in ranges of at least
// enough rows for about 64k element operations (`row_cost` per row): fewer
// and a thread's start costs more than its work.
template <class Fn>
void parallel_rows(int64_t rows, int64_t row_cost, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(row_cost, 1));
  at::parallel_for(0, rows, grain, fn);
}

}  // namespace undo
