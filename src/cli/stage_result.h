// What every training stage leaves behind (kept apart from stages.h so that
// main.cpp compiles without torch).
#pragma once
#include <map>
#include <string>

#include "train/trainer.h"

namespace undo {

// RUN_DIR/model.ckpt (weights only) and RUN_DIR/summary.json (stage, `extra`
// fields, steps, tokens, wall time, parameters, final evaluation); prints the
// summary. Every rank calls it (a sharded model is gathered unit by unit for
// the writer); only the writer writes and prints. `trained_from`: the meta of
// the model this one was trained from (the base, the teacher), whose origin it
// carries (carry_origin).
void write_stage_result(const Config& cfg, const std::string& stage, Transformer& model, const TrainResult& r,
                        double wall_s, const std::map<std::string, std::string>& extra = {},
                        const CheckpointMeta* trained_from = nullptr);

}  // namespace undo
