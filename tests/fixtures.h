// Model fixtures shared by the unlearning, distillation and relearning tests.
#pragma once
#include <memory>
#include <string>

#include "data/stream.h"
#include "model/transformer.h"

namespace undo::test {

// The tests' tiny architecture (vocab 320, d 32, 2 layers, window 32), freshly initialised.
Transformer tiny_model(uint64_t seed);
// A stream mix over the tiny data ("english:0.5,muldiv:0.5"), window 32.
std::shared_ptr<StreamMix> tiny_mix(const std::string& text);
// tiny_model(1) trained 150 steps on the base mix (once per process): its checkpoint, and a fresh load of it.
const std::string& trained_tiny_checkpoint();
Transformer trained_tiny_model();

}  // namespace undo::test
