// What a logit cache keeps of a teacher at each position, as tensors: drawing
// it from the teacher's logits (on the device they live on, every position of
// a batch at once), and converting it to and from the cache's rows at the
// file's precision. The loss that reads it is train/objectives/distill.h's.
#pragma once
#include <torch/torch.h>

#include "cache/logit_cache.h"

namespace undo {

// Per position: the top-k ids [.., k] (long), their log-probs [.., k] and the
// log of the leftover mass [..] (-inf when k = vocab), all undefined when k = 0;
// and `samples` draws [.., s] (long, ascending) with their log-probs, from the
// whole distribution when k = 0, else from the leftover mass (undefined when s = 0).
struct TeacherTargets {
  torch::Tensor ids, logp, rest_logp;
  torch::Tensor tail_ids, tail_logp;
};

// The targets of `teacher_logits` [.., V]. The draws are stratified
// inverse-CDF samples: draw i of a position inverts its CDF at (i + u_i) / s,
// the u_i uniform from a CPU generator seeded with `seed` (so the same logits
// and seed give the same draws on any device). Each draw alone is not
// distributed as p, but their mean of any f is unbiased for E_p[f], with less
// variance than independent draws (docs/LOGIT_CACHE.md).
// With `times`, the device is synchronised after each phase and the phases are
// timed (the probabilities and top-k, then the draws).
struct TargetTimes {
  double probs_topk_s = 0, sample_s = 0;
};
TeacherTargets teacher_targets(const torch::Tensor& teacher_logits, int k, int samples = 0, uint64_t seed = 0,
                               TargetTimes* times = nullptr);

// Rows [count, window] of targets as the cache stores them (its key's columns
// and precision), with the input tokens [count, window].
LogitRows cache_rows_of(const TeacherTargets& targets, const torch::Tensor& tokens, const LogitCacheKey& key);
// Rows of a cache as tensors on the compute device (log-probs float) and the
// input tokens (on the host, where they are compared with the stream's).
TeacherTargets targets_of(const LogitRows& rows, const LogitCacheKey& key, torch::Tensor* tokens);

}  // namespace undo
