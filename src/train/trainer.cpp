#include "train/trainer.h"

#include <malloc.h>

#include <chrono>
#include <csignal>
#include <iostream>
#include <limits>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "core/stop_signal.h"
#include "core/stage_settings.h"
#include "model/device.h"
#include "model/precision.h"
#include "train/metrics.h"
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

// torch::nn::utils::clip_grad_norm_ returns the norm as a double, which waits
// for the GPU; this returns it as a tensor and scales the gradients on the device.
// `sharded_over`: the gradients are this rank's shards, and the norm is global.
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm,
                             Communicator* sharded_over) {
  std::vector<torch::Tensor> grads;
  for (auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({}, torch::kDouble);
  auto total = torch::stack(torch::_foreach_norm(grads)).to(torch::kDouble).norm();
  if (sharded_over) {
    auto squares = (total * total).reshape({1});
    sharded_over->allreduce_sum(squares, "all-reduce of the gradient norm");
    total = squares.sqrt().reshape({});
  }
  auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
  torch::_foreach_mul_(grads, coef.to(grads[0].scalar_type()));
  return total;
}

}  // namespace

Trainer::Trainer(const Config& cfg, std::string stage, Transformer model, Objective& objective, Evaluator* evaluator)
    : cfg_(cfg), stage_(std::move(stage)), model_(std::move(model)), objective_(objective), evaluator_(evaluator),
      comm_(distributed()) {
  auto named = objective_.trainable(model_);
  if (cfg_.dist.zero == 3) shard_for_zero3(named);
  for (auto& [name, p] : named) trainable_.push_back(p);
  optimizer_ = std::make_unique<AdamW>(named, cfg_.optim, comm_, cfg_.dist.zero == 1);
  if (zero3_) zero3_state_ = std::make_unique<Zero3AdamWState>(*optimizer_, *zero3_);
  else if (comm_) reducer_ = std::make_unique<GradReducer>(trainable_, comm_, cfg_.dist.bucket_mb);
}

void Trainer::shard_for_zero3(std::vector<std::pair<std::string, torch::Tensor>>& named) {
  // An objective that trains part of the model (RMU: one matrix a block): the
  // rest is frozen, and its part of a shard has gradient 0. AdamW leaves such
  // an element as it is only without weight decay (which the stages that
  // train part of the model have).
  std::set<const void*> trained;
  for (auto& [name, p] : named) trained.insert(p.unsafeGetTensorImpl());
  const auto all = model_->parameters();
  UNDO_INPUT_CHECK(trained.size() == all.size() || cfg_.optim.weight_decay == 0, "dist.zero = 3: the ", stage_,
                   " stage trains ", trained.size(), " of the model's ", all.size(),
                   " parameter tensors, and weight decay (optim.weight_decay = ", cfg_.optim.weight_decay,
                   ") would move the frozen rest of its shards; use dist.zero 0 or 1");
  if (auto sharded = std::dynamic_pointer_cast<Zero3>(model_->runner)) {
    // Sharded as the stage made it (stage_models.h): told what trains.
    zero3_ = sharded;
    zero3_->train_only(trained, cfg_.dist.recompute);
  } else {
    for (auto& p : all)
      if (!trained.count(p.unsafeGetTensorImpl())) p.requires_grad_(false);
    zero3_ = std::make_shared<Zero3>(model_, comm_, /*trained=*/true, cfg_.dist.recompute);  // cut from rank 0's weights
  }
  model_->runner = zero3_;
  named = zero3_->shards();
}

int64_t Trainer::state_bytes() const {
  auto bytes = [](const torch::Tensor& t) { return t.defined() ? int64_t(t.numel() * t.element_size()) : 0; };
  int64_t n = 0;
  for (auto& p : model_->parameters()) n += bytes(p);
  for (auto& t : trainable_) n += (zero3_ ? bytes(t) : 0) + bytes(t.grad());  // zero 3 trains shards, not the model
  if (optimizer_)  // null after a zero-3 run's end
    for (auto* moments : {&optimizer_->exp_avg(), &optimizer_->exp_avg_sq()})
      for (auto& m : *moments) n += bytes(m);
  return n;
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
  save_checkpoint(is_root() ? step_checkpoint_path(cfg_.run.dir, step) : "", meta, model_, optimizer_state());
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

TrainResult Trainer::run() {
  const auto& t = cfg_.train;
  const int rank = comm_ ? comm_->rank() : 0, world = comm_ ? comm_->world() : 1;
  UNDO_CHECK(!cfg_.run.dir.empty(), stage_, ": no run.dir (a stage calls require_run_dir before training)");
  if (is_root()) make_dirs(cfg_.run.dir);
  int64_t start = 0;
  bool eval_pending = false, resumed_stopped = false;
  if (cfg_.run.resume) {
    if (auto path = latest_valid_checkpoint(cfg_.run.dir)) {
      // Only this run's checkpoint is continued (prepare_run checked the run
      // directory; an attack's own directory is checked here).
      auto diff = identity_mismatch(read_checkpoint_meta(*path), identity());
      UNDO_INPUT_CHECK(diff.empty(), "--resume: checkpoint '", *path, "' belongs to another run: ", diff);
      auto meta = load_checkpoint(*path, model_, optimizer_state());  // zero 3: each rank reads its shards
      start = meta.step;
      eval_pending = meta.extra.count("eval_pending") > 0;
      resumed_stopped = meta.extra.count("rule_stopped") > 0;
      if (is_root()) std::cerr << stage_ << ": resuming from " << *path << " at step " << start << "\n";
    } else if (is_root()) {
      std::cerr << stage_ << ": --resume given but no valid checkpoint in " << cfg_.run.dir << ", starting fresh\n";
    }
  }
  // Every rank starts from rank 0's weights, whatever it initialised or loaded
  // (zero 3 cut its shards from them already).
  if (comm_ && !zero3_) {
    torch::NoGradGuard no_grad;
    comm_->broadcast(model_->parameters(), 0);
  }
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
  auto window_clock = std::chrono::steady_clock::now();
  int64_t window_tokens = 0;
  for (int64_t step = start; !rule_stopped && step < t.steps; ++step) {
    maybe_inject_fault(rank, step);
    double lr = learning_rate(cfg_.optim, step, t.steps);
    optimizer_->zero_grad();
    torch::Tensor loss_sum;
    StepLogs extra;
    for (int micro = 0; micro < t.accum; ++micro) {
      if (micro > 0 && vote_between_micro_batches && stop_vote(comm_.get())) {
        // The step is dropped (nothing was reduced or stepped yet); the data
        // of a step is a function of its number, so a resume redoes it exactly.
        optimizer_->zero_grad();
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
      if (reducer_) reducer_->arm(micro == t.accum - 1);
      (loss / t.accum).backward();
      objective_.after_backward(model_);
      auto l = loss.detach().to(torch::kDouble) / t.accum;
      loss_sum = loss_sum.defined() ? loss_sum + l : l;
    }
    if (reducer_) reducer_->finish();
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
    torch::Tensor grad_norm_t;
    if (cfg_.optim.grad_clip > 0)
      grad_norm_t = clip_grad_norm(trainable_, cfg_.optim.grad_clip, zero3_ ? comm_.get() : nullptr);
    if (zero3_) zero3_->drop_prefetch();  // never a gather of the shards from before this step
    optimizer_->step(lr);

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
      UNDO_CHECK(std::isfinite(step_loss), stage_, ": loss is ", step_loss, " at step ", step);
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_clock).count();
    double tps = secs > 0 ? double(window_tokens) / secs : 0;
    if (sync) progress.update(done, step_loss, tps);
    if (done % t.log_every == 0 || last) {
      double grad_norm = grad_norm_t.defined() ? grad_norm_t.item<double>() : 0.0;
      JsonObject line;
      line.add("step", done).add("tokens", result.tokens).add("loss", step_loss).add("lr", lr)
          .add("grad_norm", grad_norm).add("tokens_per_s", tps);
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
  if (zero3_) {
    // The stage goes on with the model still sharded (it saves it unit by
    // unit, and evaluates it as in training). The optimizer is done (the last
    // checkpoint holds its state): its moments and the shards' gradients go.
    zero3_state_.reset();
    optimizer_.reset();
    for (auto& t : trainable_) t.mutable_grad() = torch::Tensor();
    trainable_.clear();
  }
  if (!step_losses.empty()) {
    auto all = torch::stack(step_losses).to(torch::kCPU);
    result.losses.assign(all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  }
  return result;
}

}  // namespace undo
