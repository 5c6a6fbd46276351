#include "train/trainer.h"

#include <malloc.h>

#include <chrono>
#include <iomanip>
#include <csignal>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/stop_signal.h"
#include "core/stage_settings.h"
#include "model/device.h"
#include "model/precision.h"
#include "train/metrics.h"
#include "train/nonfinite_steps.h"
#include "train/run_dir.h"
#include "train/schedule.h"

namespace undo {

void keep_freed_memory() {
  ::mallopt(M_MMAP_MAX, 0);
  ::mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  ::mallopt(M_TOP_PAD, 64 << 20);
}

void configure_threads(const RunConfig& run, int local_world) {
  keep_freed_memory();
  int n = run.threads;
  if (n <= 0) n = std::max(1, int(std::thread::hardware_concurrency()) / std::max(1, local_world));
  at::set_num_threads(n);
}

namespace {
// Test-only fault injection: UNDO_FAULT_STOP="RANK:STEP" makes that rank stop
// answering (SIGSTOP) before that step, as a hung node would; UNDO_FAULT_EXIT=STEP
// kills the process there.
void maybe_inject_fault(int rank, int64_t step) {
  // UNDO_FAULT_EXIT=STEP: the process dies at once before that step, as a killed job would.
  static const char* exit_at = std::getenv("UNDO_FAULT_EXIT");
  if (exit_at && std::atoll(exit_at) == step) std::_Exit(137);
  static const char* spec = std::getenv("UNDO_FAULT_STOP");
  if (!spec) return;
  int r = -1;
  long long s = -1;
  if (std::sscanf(spec, "%d:%lld", &r, &s) == 2 && r == rank && s == step) std::raise(SIGSTOP);
}

// Test-only: UNDO_FAULT_NAN="FIRST:COUNT[:RANK]" makes the loss NaN on COUNT
// steps from step FIRST (0-based), on every rank or on RANK alone.
bool nan_injected(int rank, int64_t step) {
  const char* spec = std::getenv("UNDO_FAULT_NAN");  // read each step: a test sets it in-process
  if (!spec) return false;
  long long first = -1, count = 0;
  int r = -1;
  if (std::sscanf(spec, "%lld:%lld:%d", &first, &count, &r) < 2) return false;
  return step >= first && step < first + count && (r < 0 || r == rank);
}

std::vector<torch::Tensor> defined_gradients(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> grads;
  for (auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  return grads;
}

// The global gradient norm as a device tensor (torch::nn::utils::clip_grad_norm_
// returns a double, which waits for the GPU). `sharded_over`: the gradients
// are this rank's parts, and the norm is summed over them.
torch::Tensor gradient_norm(const std::vector<torch::Tensor>& params, Communicator* sharded_over) {
  const auto grads = defined_gradients(params);
  auto total = grads.empty() ? torch::zeros({}, torch::kDouble)
                             : torch::stack(torch::_foreach_norm(grads)).to(torch::kDouble).norm();
  if (sharded_over) {
    auto squares = (total * total).reshape({1});
    sharded_over->allreduce_sum(squares, "all-reduce of the gradient norm");
    total = squares.sqrt().reshape({});
  }
  return total;
}

// Scales the gradients on the device so that their global norm is at most max_norm.
void clip_gradients(const std::vector<torch::Tensor>& params, const torch::Tensor& norm, double max_norm) {
  auto grads = defined_gradients(params);
  if (grads.empty()) return;
  auto coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
  torch::_foreach_mul_(grads, coef.to(grads[0].scalar_type()));
}

}  // namespace

Trainer::Trainer(const Config& cfg, std::string stage, Transformer model, Objective& objective, Evaluator* evaluator,
                 std::shared_ptr<Parallelism> parallel)
    : cfg_(cfg), stage_(std::move(stage)), model_(std::move(model)), objective_(objective), evaluator_(evaluator),
      comm_(distributed()), parallel_(parallel ? std::move(parallel) : make_parallelism(cfg)) {
  training_ = parallel_->train(model_, objective_.trainable(model_), cfg_.optim, stage_);
  for (auto& [name, t] : training_->stepped()) stepped_.push_back(t);
  objective_.bind(*training_);
}

int64_t Trainer::state_bytes() const {
  int64_t n = 0;
  for (auto& p : model_->parameters()) n += p.defined() ? int64_t(p.numel() * p.element_size()) : 0;
  return n + (training_ ? training_->state_bytes() : 0);
}

void Trainer::checkpoint(int64_t step, bool eval_pending, bool rule_stopped) {
  CheckpointMeta meta;
  meta.model = model_->cfg;
  meta.step = step;
  meta.stage = stage_;
  if (eval_pending) meta.extra["eval_pending"] = "1";
  if (rule_stopped) meta.extra["rule_stopped"] = "1";
  stamp_identity(meta, identity());
  // Collective under ZeRO-1 and 3 (zero 3 gathers one unit at a time for rank 0 to write).
  save_checkpoint(is_root() ? step_checkpoint_path(cfg_.run.dir, step) : "", meta, model_, &training_->optimizer_state());
  if (is_root()) prune_checkpoints(cfg_.run.dir, cfg_.train.keep_ckpts);
}

const std::map<std::string, std::string>& Trainer::identity() {
  if (identity_.empty()) {  // constant for the run: the manifest is hashed once
    identity_ = run_identity(cfg_, comm_ ? comm_->world() : 1);
    // Only what this stage reads: a pretraining cut by a kill resumes although
    // the sweep's [unlearn] budget changed meanwhile.
    for (auto it = identity_.begin(); it != identity_.end();)
      it = stage_reads_key(stage_, it->first) ? std::next(it) : identity_.erase(it);
    identity_["stage"] = stage_;
  }
  return identity_;
}

bool Trainer::evaluate(int64_t done, MetricsLog& metrics, TrainResult& result) {
  // Every rank evaluates (identically), so none waits on another's
  // evaluation; they vote on a stop between evaluation batches.
  JsonObject scores;
  try {
    scores = evaluator_->run(model_, [this] { return stop_vote(comm_.get()); });
  } catch (const StopRequested&) {
    return false;
  }
  JsonObject line;
  line.add("step", done).add("tokens", result.tokens).merge(scores);
  metrics.write(line);
  result.final_eval = evaluator_->last();
  return true;
}

// Each rank opens a candidate once and verifies only the bytes it reads (its
// shards under zero 3). Where a read fails its checksum on any rank, every
// rank goes on to the next older checkpoint together: the vote keeps them on
// one step. A checkpoint of another run is refused, not skipped; so is a
// fresh start after a load failed partway (the model and the optimizer then
// hold part of a corrupted file, not a fresh initialisation).
std::optional<CheckpointMeta> Trainer::resume() {
  const int rank = comm_ ? comm_->rank() : 0;
  bool loaded_part = false;  // a load that failed partway, here
  for (auto& path : step_checkpoints_newest_first(cfg_.run.dir)) {
    auto in = open_checkpoint_or_skip(path);
    bool intact = bool(in);
    if (in) {
      // Only this run's checkpoint is continued (prepare_run checked the run
      // directory; an attack's own directory is checked here).
      auto diff = identity_mismatch(in->meta(), identity());
      UNDO_INPUT_CHECK(diff.empty(), "--resume: checkpoint '", path, "' belongs to another run: ", diff);
      try {
        load_checkpoint(*in, model_, &training_->optimizer_state());
      } catch (const CorruptBlock& e) {
        std::cerr << "resume: rank " << rank << " skips a corrupted checkpoint: " << e.what() << "\n";
        intact = false;
        loaded_part = true;
      }
    }
    if (comm_ ? comm_->any(!intact, "the resume's vote on " + path) : !intact) continue;
    const std::string share = verified_share(*in);  // collective
    if (is_root()) std::cerr << stage_ << ": resuming from " << path << " at step " << in->meta().step << " (" << share
                             << ")\n";
    return in->meta();
  }
  const bool any_part = comm_ ? comm_->any(loaded_part, "the resume's last vote") : loaded_part;
  UNDO_INPUT_CHECK(!any_part, "--resume: no checkpoint in ", join_path(cfg_.run.dir, "ckpt"),
                   " reads intact on every rank (each failure is named above), and a fresh start would begin from "
                   "the part already loaded; nothing was trained (move the corrupted checkpoints away to start "
                   "afresh)");
  return std::nullopt;
}

// "each rank verified 34.0-36.1% of the file's 1253760 bytes": gathered from every rank (collective).
std::string Trainer::verified_share(const CheckpointReader& in) {
  const int world = comm_ ? comm_->world() : 1;
  auto mine = torch::tensor({double(in.bytes_verified()) / double(in.file_bytes())}, torch::kDouble);
  auto all = torch::empty({world}, torch::kDouble);
  if (comm_) comm_->all_gather(all, mine, "the resume's verified bytes");
  else all.copy_(mine);
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << (world > 1 ? "each rank verified " : "verified ")
     << 100 * all.min().item<double>();
  if (world > 1) os << "-" << 100 * all.max().item<double>();
  os << "% of the file's " << in.file_bytes() << " bytes";
  return os.str();
}

TrainResult Trainer::run() {
  const auto& t = cfg_.train;
  const int rank = comm_ ? comm_->rank() : 0, world = comm_ ? comm_->world() : 1;
  UNDO_CHECK(!cfg_.run.dir.empty(), stage_, ": no run.dir (a stage calls require_run_dir before training)");
  if (is_root()) make_dirs(cfg_.run.dir);
  int64_t start = 0;
  bool eval_pending = false, resumed_stopped = false;
  if (cfg_.run.resume) {
    if (auto meta = resume()) {
      start = meta->step;
      eval_pending = meta->extra.count("eval_pending") > 0;
      resumed_stopped = meta->extra.count("rule_stopped") > 0;
    } else if (is_root()) {
      std::cerr << stage_ << ": --resume given but no valid checkpoint in " << cfg_.run.dir << ", starting fresh\n";
    }
  }
  // Every rank starts from rank 0's weights, whatever it initialised or loaded.
  training_->start_from_rank0();
  MetricsLog metrics(join_path(cfg_.run.dir, "metrics.jsonl"), is_root(), cfg_.run.resume ? start : -1,
                     join_path(cfg_.run.dir, "tensorboard"));
  install_stop_handlers();
  Progress progress(stage_, t.steps, is_root());
  const bool bf16 = t.precision == "bf16";
  const int64_t tokens_per_step = int64_t(world) * t.batch_size * t.accum * objective_.tokens_per_row();
  TrainResult result;
  result.tokens = start * tokens_per_step;
  result.steps_done = start;
  auto stopped = [&](int64_t at, const std::string& where) {
    progress.finish();
    return Preempted(stage_ + ": stop signal received " + where + "; checkpointed at step " + std::to_string(at) +
                     " in " + cfg_.run.dir + " (rerun with --resume to continue)");
  };
  // The evaluation a stop signal interrupted before this run's checkpoint, and
  // the stopping rule's look at it, which came after it.
  // A run whose rule had ended it at its checkpoint (killed before the stage
  // finished) ends there again.
  bool rule_stopped = resumed_stopped;
  if (eval_pending && evaluator_) {
    if (!evaluate(start, metrics, result)) throw stopped(start, "in its evaluation");
    rule_stopped = start < t.steps && stopping_rule && stopping_rule(start);
  }
  if (rule_stopped) result.rule_stopped_at = start;
  model_->train();

  // No host synchronisation inside a step on a GPU: the loss, the logged
  // scalars and the gradient norm stay device tensors, and the host reads
  // them (and the ranks agree on a stop signal) only at "sync" steps, those
  // that log, evaluate or checkpoint. On the CPU a read costs nothing, so every
  // step is a sync step there and a stop signal is honoured after one step.
  const bool sync_every_step = !computing_on_cuda();
  // Between micro-batches the ranks vote on a stop only where reading the
  // vote costs nothing (the CPU); on a GPU a step is short and the stop waits
  // for the next sync step.
  const bool vote_between_micro_batches = sync_every_step && t.accum > 1;
  std::vector<torch::Tensor> step_losses;  // read once, at the end
  NonFiniteSteps nonfinite(stage_, t.max_skipped_steps);
  // Steps skipped before this process: those its optimizer did not apply.
  const int64_t skipped_before = std::max<int64_t>(0, start - training_->optimizer().steps());
  result.skipped_steps = skipped_before;
  auto window_clock = std::chrono::steady_clock::now();
  int64_t window_tokens = 0;
  for (int64_t step = start; !rule_stopped && step < t.steps; ++step) {
    maybe_inject_fault(rank, step);
    double lr = learning_rate(cfg_.optim, step, t.steps);
    AdamW& optimizer = training_->optimizer();
    optimizer.zero_grad();
    torch::Tensor loss_sum;
    StepLogs extra;
    for (int micro = 0; micro < t.accum; ++micro) {
      if (micro > 0 && vote_between_micro_batches && stop_vote(comm_.get())) {
        // The step is dropped (nothing was reduced or stepped yet); the data
        // of a step is a function of its number, so a resume redoes it exactly.
        optimizer.zero_grad();
        checkpoint(step);
        throw stopped(step, "inside step " + std::to_string(step + 1) + " (micro-batch " +
                                std::to_string(micro + 1) + " of " + std::to_string(t.accum) + ")");
      }
      // Global rows of this micro-batch: world x batch_size, this rank's slice of them.
      int begin = (micro * world + rank) * t.batch_size;
      MicroBatch mb{uint64_t(cfg_.run.seed), step, begin, begin + t.batch_size};
      torch::Tensor loss;
      {
        AutocastGuard autocast(bf16, computing_on_cuda());
        loss = objective_.loss(model_, mb, &extra);
      }
      if (nan_injected(rank, step)) loss = loss * std::numeric_limits<double>::quiet_NaN();
      training_->before_backward(micro == t.accum - 1);
      (loss / t.accum).backward();
      objective_.after_backward(model_);
      auto l = loss.detach().to(torch::kDouble) / t.accum;
      loss_sum = loss_sum.defined() ? loss_sum + l : l;
    }
    training_->gradients_ready();
    int64_t done = step + 1;
    bool last = done == t.steps;
    bool eval_now = evaluator_ && ((t.eval_every > 0 && done % t.eval_every == 0) || last);
    bool sync = sync_every_step || last || eval_now || done % t.log_every == 0 ||
                (t.ckpt_every > 0 && done % t.ckpt_every == 0);
    // The loss, this rank's stop flag and every logged scalar in one tensor: one
    // all-reduce averages them over ranks, one copy brings them to the host.
    std::vector<torch::Tensor> parts{loss_sum.reshape({1}),
                                     torch::full({1}, stop_signalled() ? 1.0 : 0.0,
                                                 loss_sum.options())};
    for (auto& [k, v] : extra) parts.push_back(v.to(torch::kDouble).reshape({1}));
    auto packed = torch::cat(parts);
    if (comm_) {
      comm_->allreduce_sum(packed, "all-reduce of the step's metrics");
      packed.div_(world);
    }
    step_losses.push_back(packed[0]);
    // The global norm (every rank's the same), for clipping, the log and the
    // non-finite check: a step whose loss or gradient is not finite is skipped.
    const torch::Tensor grad_norm_t = gradient_norm(stepped_, training_->gradient_parts_over());
    if (cfg_.optim.grad_clip > 0) clip_gradients(stepped_, grad_norm_t, cfg_.optim.grad_clip);
    const torch::Tensor skip = nonfinite.flag(packed[0], grad_norm_t);
    training_->weights_changed();
    optimizer.step(lr, skip);

    result.tokens += tokens_per_step;
    window_tokens += tokens_per_step;
    double step_loss = 0, stop_requested = 0;
    if (sync) {
      auto host = packed.to(torch::kCPU);
      auto h = host.accessor<double, 1>();
      step_loss = h[0];
      stop_requested = h[1];
      int64_t i = 2;
      for (auto& [k, v] : extra) v = host[i++];
      result.skipped_steps = skipped_before + nonfinite.check(done);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_clock).count();
    double tps = secs > 0 ? double(window_tokens) / secs : 0;
    if (sync) progress.update(done, step_loss, tps);
    if (done % t.log_every == 0 || last) {
      JsonObject line;
      line.add("step", done).add("tokens", result.tokens).add("loss", step_loss).add("lr", lr)
          .add("grad_norm", grad_norm_t.item<double>()).add("tokens_per_s", tps)
          .add("skipped_steps", result.skipped_steps);
      for (auto& [k, v] : extra) line.add(k, v.item<double>() / t.accum);
      metrics.write(line);
      window_clock = std::chrono::steady_clock::now();
      window_tokens = 0;
    }
    if (eval_now && !evaluate(done, metrics, result)) {
      checkpoint(done, /*eval_pending=*/true);
      throw stopped(done, "in the evaluation after step " + std::to_string(done));
    }
    bool stop = stop_requested > 0 && !last;
    // The rule looks before the checkpoint, which records its verdict: a run
    // killed between that checkpoint and the stage's end resumes stopped, as
    // the uninterrupted run ended (it used to train on to the full budget).
    const bool rule = stopping_rule && stopping_rule(done);
    if ((t.ckpt_every > 0 && done % t.ckpt_every == 0) || last || stop || rule) checkpoint(done, false, rule);
    result.steps_done = done;
    if (rule) {
      result.rule_stopped_at = done;
      break;  // the run is complete: a stop signal now has nothing left to save
    }
    if (stop) throw stopped(done, "after step " + std::to_string(done));
    if (stop_after && stop_after(done)) break;
  }
  progress.finish();
  if (result.steps_done > start) result.state_bytes = state_bytes();
  // The optimizer is done (the last checkpoint holds its state); the model
  // stays as the layout keeps it, for the stage to save and evaluate.
  training_->end();
  stepped_.clear();
  if (!step_losses.empty()) {
    auto all = torch::stack(step_losses).to(torch::kCPU);
    result.losses.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  }
  return result;
}

}  // namespace undo
