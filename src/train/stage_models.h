// How a stage gets its models: through the run's layout (train/parallelism.h),
// whole, or under dist.zero = 3 sharded as they are made, never whole on a
// rank: laid out without storage (TransformerImpl's storage = false) and
// sharded at once (distributed/zero3.h), each rank
// filling only its own slices, from a checkpoint file, from the initialiser,
// or from a teacher's file with UNDO's noise. The values equal those of the
// whole model made the unsharded way (load_model, init_weights,
// apply_undo_noise), bit for bit; a Trainer takes a sharded model as it is.
#pragma once
#include <memory>
#include <string>

#include "core/config.h"
#include "distributed/communicator.h"
#include "train/checkpoint.h"
#include "model/transformer.h"
#include "train/parallelism.h"

namespace undo {

// Each takes a checkpoint file already opened (and verified, once) by the
// stage, which read its meta to configure the run, and the run's layout
// (train/parallelism.h), which lays the model out: sharded over the run's
// ranks under dist.zero = 3, else whole. Each model computes its losses as
// the run's train.* keys say, on the compute device.

// The model of `in` for a run of `cfg`, checked against its data. `frozen`: a
// forward-only model in eval mode (a teacher, the model an attack starts from
// evaluated), else one a Trainer trains.
Transformer load_model_for_run(const Config& cfg, Parallelism& parallel, const CheckpointReader& in, bool frozen);
// A fresh model of cfg.model for a run of `cfg`: init_weights(cfg.run.seed)'s values.
Transformer initialised_model_for_run(const Config& cfg, Parallelism& parallel);
// UNDO's student for a run of `cfg`: the teacher file's weights with
// apply_undo_noise(distill.alpha, distill.beta, run.seed).
Transformer noised_model_for_run(const Config& cfg, Parallelism& parallel, const CheckpointReader& teacher);

// The sharded layout's models (ZeRO-3), over `comm`'s ranks:
// The model of a checkpoint file; `frozen`: a forward-only model in eval mode
// (a teacher, a reference), else one a Trainer trains.
Transformer load_sharded(const CheckpointReader& in, std::shared_ptr<Communicator> comm, torch::Device device,
                         bool frozen);
// A fresh model: init_weights(seed)'s values.
Transformer initialised_sharded(const ModelConfig& cfg, std::shared_ptr<Communicator> comm, torch::Device device,
                                uint64_t seed);
// UNDO's noised student: the teacher file's weights with apply_undo_noise(alpha, beta, seed).
Transformer noised_sharded(const CheckpointReader& teacher, std::shared_ptr<Communicator> comm, torch::Device device,
                           double alpha, double beta, uint64_t seed);

}  // namespace undo
