#include "train/trainer.h"

#include <malloc.h>

#include <chrono>
#include <limits>
#include <iostream>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "model/precision.h"
#include "train/metrics.h"
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

Trainer::Trainer(const Config& cfg, std::string stage, Transformer model, Objective& objective, Evaluator* evaluator)
    : cfg_(cfg), stage_(std::move(stage)), model_(std::move(model)), objective_(objective), evaluator_(evaluator) {
  auto& o = cfg_.optim;
  optimizer_ = std::make_unique<torch::optim::AdamW>(
      objective_.trainable(model_),
      torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay));
}

void Trainer::checkpoint(int64_t step) {
  CheckpointMeta meta;
  meta.model = model_->cfg;
  meta.step = step;
  meta.stage = stage_;
  save_checkpoint(step_checkpoint_path(cfg_.run.dir, step), meta, model_, optimizer_.get());
  prune_checkpoints(cfg_.run.dir, cfg_.train.keep_ckpts);
}

TrainResult Trainer::run() {
  const auto& t = cfg_.train;
  make_dirs(cfg_.run.dir);
  int64_t start = 0;
  if (cfg_.run.resume) {
    if (auto path = latest_valid_checkpoint(cfg_.run.dir)) {
      auto meta = load_checkpoint(*path, model_, optimizer_.get());
      start = meta.step;
      std::cerr << stage_ << ": resuming from " << *path << " at step " << start << "\n";
    } else {
      std::cerr << stage_ << ": --resume given but no valid checkpoint in " << cfg_.run.dir << ", starting fresh\n";
    }
  }
  MetricsLog metrics(join_path(cfg_.run.dir, "metrics.jsonl"), true, cfg_.run.resume ? start : -1);
  Progress progress(stage_, t.steps, true);
  const bool bf16 = t.precision == "bf16";
  const int64_t tokens_per_step = int64_t(t.batch_size) * t.accum * objective_.tokens_per_row();
  TrainResult result;
  result.tokens = start * tokens_per_step;
  model_->train();

  auto window_clock = std::chrono::steady_clock::now();
  int64_t window_tokens = 0;
  for (int64_t step = start; step < t.steps; ++step) {
    double lr = learning_rate(cfg_.optim, step, t.steps);
    for (auto& group : optimizer_->param_groups())
      static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
    optimizer_->zero_grad();
    double step_loss = 0;
    std::map<std::string, double> extra;
    for (int micro = 0; micro < t.accum; ++micro) {
      MicroBatch mb{uint64_t(cfg_.run.seed), step, micro * t.batch_size, (micro + 1) * t.batch_size};
      torch::Tensor loss;
      {
        AutocastGuard autocast(bf16, false);
        loss = objective_.loss(model_, mb, &extra);
      }
      (loss / t.accum).backward();
      step_loss += loss.item<double>() / t.accum;
    }
    UNDO_CHECK(std::isfinite(step_loss), stage_, ": loss is ", step_loss, " at step ", step);
    double grad_norm = 0;
    if (cfg_.optim.grad_clip > 0)
      grad_norm = torch::nn::utils::clip_grad_norm_(objective_.trainable(model_), cfg_.optim.grad_clip);
    optimizer_->step();

    result.tokens += tokens_per_step;
    window_tokens += tokens_per_step;
    result.losses.push_back(step_loss);
    int64_t done = step + 1;
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - window_clock).count();
    double tps = secs > 0 ? double(window_tokens) / secs : 0;
    progress.update(done, step_loss, tps);
    if (done % t.log_every == 0 || done == t.steps) {
      JsonObject line;
      line.add("step", done).add("tokens", result.tokens).add("loss", step_loss).add("lr", lr)
          .add("grad_norm", grad_norm).add("tokens_per_s", tps);
      for (auto& [k, v] : extra) line.add(k, v / t.accum);
      metrics.write(line);
      window_clock = std::chrono::steady_clock::now();
      window_tokens = 0;
    }
    bool last = done == t.steps;
    if (evaluator_ && ((t.eval_every > 0 && done % t.eval_every == 0) || last)) {
      JsonObject line;
      line.add("step", done).add("tokens", result.tokens).merge(evaluator_->run(model_));
      metrics.write(line);
      result.final_eval = evaluator_->last();
    }
    if ((t.ckpt_every > 0 && done % t.ckpt_every == 0) || last) checkpoint(done);
    result.steps_done = done;
    if (stop_after && stop_after(done)) break;
  }
  progress.finish();
  return result;
}

}  // namespace undo
