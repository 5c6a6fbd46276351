#include "fixtures.h"

#include <cstdlib>

#include "train/checkpoint.h"
#include "test_util.h"
#include "train/trainer.h"

namespace undo::test {

namespace {
// UNDO_TEST_THREADS=N (launch/test's thread variants): the tests' own tensor
// work runs on N threads too, not only the stages they start.
[[maybe_unused]] const bool threads_set = [] {
  if (const char* n = std::getenv("UNDO_TEST_THREADS"); n && *n) at::set_num_threads(std::atoi(n));
  return true;
}();
}  // namespace

Transformer tiny_model(uint64_t seed) {
  ModelConfig m;
  m.vocab_size = 320;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.d_ff = 64;
  m.seq_len = 32;
  Transformer t(m);
  t->init_weights(seed);
  return t;
}

std::shared_ptr<StreamMix> tiny_mix(const std::string& text) {
  return std::make_shared<StreamMix>(tiny_data_dir(), parse_mix("m", text), "train", 32);
}

const std::string& trained_tiny_checkpoint() {
  static std::string path = [] {
    Config cfg = tiny_config(temp_dir("pretrained"));
    cfg.train.steps = 150;
    cfg.optim.lr = 1e-2;
    cfg.train.ckpt_every = 0;
    Transformer m = tiny_model(1);
    CrossEntropyObjective ce(tiny_mix(cfg.data.base_mix), 32);
    Trainer(cfg, "pretrain-base", m, ce, nullptr).run();
    CheckpointMeta meta;
    meta.model = m->cfg;
    meta.stage = "pretrain-base";
    save_checkpoint(cfg.run.dir + "/model.ckpt", meta, m, nullptr);
    return cfg.run.dir + "/model.ckpt";
  }();
  return path;
}

Transformer trained_tiny_model() { return load_model(trained_tiny_checkpoint()); }

}  // namespace undo::test
