#include "train/stage_models.h"

#include "data/prepared_check.h"
#include "distributed/zero3.h"
#include "model/device.h"
#include "model/noise.h"

namespace undo {
namespace {

// The model laid out, its runner attached: shards of zeros until filled.
std::pair<Transformer, std::shared_ptr<Zero3>> laid_out(const ModelConfig& cfg, std::shared_ptr<Communicator> comm,
                                                        torch::Device device, bool frozen) {
  Transformer model(cfg, /*storage=*/false);
  if (frozen) model->eval();
  auto zero3 = std::make_shared<Zero3>(model, std::move(comm), /*trained=*/!frozen, device);
  model->runner = zero3;
  return {model, zero3};
}

// A stage's model computes its losses and blocks as the run's train.* keys say.
Transformer with_run_kernels(const Config& cfg, Transformer model) {
  model->head_loss.chunked = cfg.train.fused_loss;
  model->head_loss.chunk = cfg.train.loss_chunk;
  model->set_fused_blocks(cfg.train.fused_blocks);
  return model;
}

}  // namespace

Transformer load_sharded(const CheckpointReader& in, std::shared_ptr<Communicator> comm, torch::Device device,
                         bool frozen) {
  Transformer model = laid_out(in.meta().model, std::move(comm), device, frozen).first;
  load_weights(in, model);  // through the runner: each rank its slices
  return model;
}

Transformer initialised_sharded(const ModelConfig& cfg, std::shared_ptr<Communicator> comm, torch::Device device,
                                uint64_t seed) {
  auto [model, zero3] = laid_out(cfg, std::move(comm), device, /*frozen=*/false);
  auto gen = at::detail::createCPUGenerator(seed);
  const auto shapes = zero3->parameter_shapes();
  zero3->fill_from_wholes([&](size_t i) {
    auto whole = torch::empty(shapes[i].second);  // on the CPU, as init_weights draws
    init_parameter(cfg, shapes[i].first, whole, gen);
    return whole;
  });
  return model;
}

Transformer noised_sharded(const CheckpointReader& in, std::shared_ptr<Communicator> comm, torch::Device device,
                           double alpha, double beta, uint64_t seed) {
  auto [model, zero3] = laid_out(in.meta().model, std::move(comm), device, /*frozen=*/false);
  auto gen = at::detail::createCPUGenerator(seed);
  const auto shapes = zero3->parameter_shapes();
  zero3->fill_from_wholes([&](size_t i) {
    auto whole = torch::empty(shapes[i].second);
    in.read_into("model." + shapes[i].first, shapes[i].second, 0, whole);
    apply_undo_noise_to(whole, alpha, beta, gen);
    return whole;
  });
  return model;
}

Transformer load_model_for_run(const Config& cfg, Parallelism& parallel, const CheckpointReader& in, bool frozen) {
  check_model_fits_data(in.meta(), in.path(), cfg.data.dir);
  return with_run_kernels(cfg, parallel.loaded_model(in, frozen));
}

Transformer initialised_model_for_run(const Config& cfg, Parallelism& parallel) {
  return with_run_kernels(cfg, parallel.initialised_model(cfg.model, uint64_t(cfg.run.seed)));
}

Transformer noised_model_for_run(const Config& cfg, Parallelism& parallel, const CheckpointReader& teacher) {
  const auto& d = cfg.distill;
  return with_run_kernels(cfg, parallel.noised_model(teacher, d.alpha, d.beta, uint64_t(cfg.run.seed)));
}

}  // namespace undo
