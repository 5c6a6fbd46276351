// Training throughput of undo's real Trainer on a fixed random batch (so that
// data loading is excluded, as in bench/reference.py). Prints one JSON line.
//   build/undo_bench [--profile] --model.d_model 256 --model.n_layers 4 ... (any config key)
// It also measures the matrix-product rate at the model's shapes (its share
// of which the model's GFLOP/s is); --profile adds where a step's time goes
// (bench/step_profile.h), printed after the JSON line.
// --run.device cuda runs the model, the batch and the optimizer on the GPU, and
// the clock starts and stops only after the GPU's queued work is done.
#include <sys/resource.h>

#include <chrono>
#include <iostream>

#include "core/config.h"
#include "core/error.h"
#include "core/json.h"
#include "distributed/launch.h"
#include "model/device.h"
#include "train/stage_models.h"
#include "train/trainer.h"
#include "step_profile.h"

using namespace undo;

namespace {
// This process's peak resident memory.
int64_t max_rss_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return int64_t(u.ru_maxrss) * 1024;  // Linux reports KiB
}

class FixedBatchObjective : public Objective {
 public:
  FixedBatchObjective(int vocab, int rows, int window)
      : window_(window), data_(torch::randint(vocab, {rows, window + 1}, torch::kLong).to(compute_device())) {}
  torch::Tensor loss(Transformer& model, const MicroBatch&, StepLogs*) override {
    return next_token_ce(model, data_);
  }
  int64_t tokens_per_row() const override { return window_; }

 private:
  int window_;
  torch::Tensor data_;
};
}  // namespace

int main(int argc, char** argv) {
  try {
    Config cfg;
    // Defaults: the benchmark shape of the foundation issue.
    cfg.model.vocab_size = 4096;
    cfg.model.d_model = 256;
    cfg.model.n_layers = 4;
    cfg.model.n_heads = 4;
    cfg.model.d_ff = 768;
    cfg.model.seq_len = 128;
    cfg.train.batch_size = 32;
    cfg.train.steps = 23;
    cfg.train.log_every = 1000;
    cfg.train.ckpt_every = 1000000;
    cfg.run.threads = 2;
    cfg.run.dir = "/tmp/undo_bench";
    cfg.run.seed = 0;
    // --profile is the benchmark's own; the rest are config keys.
    const bool profiling = argc > 1 && std::string(argv[1]) == "--profile";
    if (profiling) {  // drop it: argv[1] takes the program's name
      argv[1] = argv[0];
      --argc;
      ++argv;
    }
    if (!parse_config(argc, argv, "bench", cfg)) return 0;
    const int warmup = 3;
    select_compute_device(cfg.run.device, detect_launch().local_rank);
    auto comm = init_distributed(cfg.dist);  // under mpirun: data parallel, as in training
    const int world = comm ? comm->world() : 1;
    configure_threads(cfg.run, comm ? comm->local_world() : 1);
    // As a stage makes it: under dist.zero = 3 sharded as it is made, never whole.
    auto parallel = make_parallelism(cfg);
    Transformer model = initialised_model_for_run(cfg, *parallel);
    FixedBatchObjective objective(cfg.model.vocab_size, cfg.train.batch_size, cfg.model.seq_len);
    Trainer trainer(cfg, "bench", model, objective, nullptr, parallel);
    std::chrono::steady_clock::time_point t0;
    int64_t state_bytes = 0;
    bench::StepProfile profile;
    trainer.stop_after = [&](int64_t step) {
      if (step == warmup) {
        synchronize_compute_device();
        t0 = std::chrono::steady_clock::now();
        if (profiling) profile.start();
      }
      if (step == cfg.train.steps - 1) state_bytes = trainer.state_bytes();  // gradients and moments exist by now
      return step == cfg.train.steps - 1;  // before the final checkpoint
    };
    trainer.run();
    synchronize_compute_device();
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int steps = cfg.train.steps - 1 - warmup;
    if (profiling) profile.stop(steps);
    double tokens = double(steps) * world * cfg.train.batch_size * cfg.train.accum * cfg.model.seq_len;
    // Training = forward + backward = 3x the forward's matmul FLOPs.
    double gflops = 3 * model->forward_flops_per_token() * tokens / secs / 1e9;
    JsonObject j;
    j.add("impl", "undo").add("world", world).add("tokens_per_s", tokens / secs)
        .add("tokens_per_s_per_rank", tokens / secs / world).add("step_ms", 1000 * secs / steps)
        .add("model_gflops", gflops).add("params", model->num_params()).add("precision", cfg.train.precision)
        .add("threads", at::get_num_threads()).add("device", cfg.run.device).add("torch", TORCH_VERSION)
        .add("zero", cfg.dist.zero).add("state_bytes_per_rank", state_bytes)
        .add("max_rss_bytes", max_rss_bytes()).add("fused_loss", cfg.train.fused_loss ? 1 : 0)
        .add("fused_blocks", cfg.train.fused_blocks ? 1 : 0);
    if (cfg.run.device == "cpu") {
      const double gemm = bench::measured_gemm_gflops(cfg.model, int64_t(cfg.train.batch_size) * cfg.model.seq_len,
                                                      cfg.train.precision, cfg.train.fused_blocks);
      j.add("gemm_gflops", gemm).add("share_of_gemm_rate", gflops / gemm);
    }
    if (!comm || comm->rank() == 0) {
      std::cout << j.str() << std::endl;
      if (profiling) profile.print(std::cout);
    }
    shutdown_distributed();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "undo_bench: " << e.what() << "\n";
    return 2;
  }
}
