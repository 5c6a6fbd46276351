// The one training loop every stage uses (pretrain, unlearn, distill,
// relearn): AdamW, warmup + cosine/constant LR, gradient clipping and
// accumulation, bf16 autocast over fp32 master weights, data parallelism over
// the job's ranks through the run's layout (train/parallelism.h: replicated,
// ZeRO-1 or ZeRO-3, which it never asks about), periodic evaluation, atomic
// checkpoints and exact resume. Stages differ by the Objective.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "core/config.h"
#include "distributed/communicator.h"
#include "eval/evaluator.h"
#include "train/checkpoint.h"
#include "model/transformer.h"
#include "train/adamw.h"
#include "train/metrics.h"
#include "train/objective.h"
#include "train/parallelism.h"

namespace undo {

struct TrainResult {
  int64_t steps_done = 0;
  int64_t tokens = 0;          // training tokens, all ranks (this run and resumed ones)
  std::vector<double> losses;  // loss of each step run in this process, averaged over ranks
  std::map<std::string, double> final_eval;
  // The step at which stopping_rule ended the run (in this process or, as
  // its checkpoint records, in the run it resumed); -1 when it did not.
  int64_t rule_stopped_at = -1;
  // Bytes of training state this rank held at its last step (Trainer::state_bytes); 0 when no step ran here.
  int64_t state_bytes = 0;
  // Steps skipped for a non-finite loss or gradient (train/nonfinite_steps.h), resumed runs' included.
  int64_t skipped_steps = 0;
};

class Trainer {
 public:
  // `stage` names the checkpoints' stage; `evaluator` may be null. The
  // communicator is the job's (distributed()), null for one process.
  // `parallel`: the run's layout, which made `model` (null: the one dist.*
  // asks for, for a model made whole).
  Trainer(const Config& cfg, std::string stage, Transformer model, Objective& objective, Evaluator* evaluator,
          std::shared_ptr<Parallelism> parallel = nullptr);
  TrainResult run();  // once per Trainer (a zero-3 run frees its optimizer at the end)
  // A stopping rule (distillation's retain recovery), asked after each
  // optimizer step and its evaluation: true means the run is complete there.
  // Its verdict goes into that step's checkpoint, so that a run killed before
  // its stage finished resumes ended, as the uninterrupted run did.
  std::function<bool(int64_t step)> stopping_rule;
  // Called after each optimizer step: true leaves the run there, recording
  // nothing (tests and benchmarks stop a run midway with it).
  std::function<bool(int64_t step)> stop_after;
  // Bytes of training state this rank holds now: the model's own weight
  // tensors (empty under zero 3), the layout's (shards, gradients, AdamW moments).
  // Activations are not included. For benchmarks, from stop_after.
  int64_t state_bytes() const;

 private:
  // `eval_pending`: the evaluation due at `step` was interrupted; a resume runs it first.
  // `rule_stopped`: stopping_rule ended the run at `step`; a resume ends there too.
  void checkpoint(int64_t step, bool eval_pending = false, bool rule_stopped = false);
  // Evaluates at `done` into the log and `result`; false when a stop signal
  // interrupted it (then nothing was written).
  bool evaluate(int64_t done, MetricsLog& metrics, TrainResult& result);
  // --resume: loads the newest checkpoint that every rank reads intact into
  // the model and the optimizer, and returns its meta (none: a fresh start).
  std::optional<CheckpointMeta> resume();
  std::string verified_share(const CheckpointReader& in);
  // This run's identity (train/run_dir.h) with the stage: stamped on every
  // checkpoint, compared on resume.
  const std::map<std::string, std::string>& identity();
  std::map<std::string, std::string> identity_;
  bool is_root() const { return !comm_ || comm_->rank() == 0; }

  Config cfg_;
  std::string stage_;
  Transformer model_;
  Objective& objective_;
  Evaluator* evaluator_;
  std::shared_ptr<Communicator> comm_;
  std::shared_ptr<Parallelism> parallel_;
  std::unique_ptr<ParallelTraining> training_;  // this run's, its optimizer freed by run()'s end
  std::vector<torch::Tensor> stepped_;          // training_->stepped()'s tensors, for clipping
};

// Sets the intra-op thread count (run.threads, or the cores this rank owns)
// and keeps freed tensor memory in the process (see keep_freed_memory).
void configure_threads(const RunConfig& run, int local_world = 1);

// glibc serves large blocks (every activation and logits tensor) with mmap and
// unmaps them on free, so each step faults every page in anew; in a VM that
// made elementwise ops 70x slower than their arithmetic (docs/PERFORMANCE.md).
// This keeps all blocks in the heap and the heap untrimmed, so that freed
// buffers are reused. Peak memory is unchanged; it is just not returned early.
void keep_freed_memory();

}  // namespace undo
