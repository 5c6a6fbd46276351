// Issue 29: one Parallelism per run (train/parallelism.h). What each layout
// hands the Trainer, and the rule that nothing outside the layouts asks which
// one it is. That every layout trains alike (world-size invariance, ZeRO-1 =
// ZeRO-3 = replicated) is the multi-rank tests' (tests/multirank/).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "fixtures.h"
#include "test_util.h"
#include "train/objective.h"
#include "train/parallelism.h"

namespace undo {
namespace {

Config with_zero(int zero) {
  Config cfg = test::tiny_config(test::temp_dir("parallelism_" + std::to_string(zero)));
  cfg.dist.zero = zero;
  return cfg;
}

NamedTensors all_parameters(Transformer& model) {
  NamedTensors out;
  for (auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

TEST(Parallelism, DistZeroChoosesTheLayout) {
  EXPECT_EQ(make_parallelism(with_zero(0))->name(), "replicated");
  EXPECT_EQ(make_parallelism(with_zero(1))->name(), "zero-1");
  EXPECT_EQ(make_parallelism(with_zero(3))->name(), "zero-3");
  try {
    make_parallelism(with_zero(2));
    ADD_FAILURE() << "dist.zero = 2 was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("dist.zero = 2"), std::string::npos) << e.what();
  }
}

// Replicated: the optimizer steps the model's own parameters; their gradients are whole on every rank.
TEST(Parallelism, TheReplicatedLayoutStepsTheModelsParameters) {
  const Config cfg = with_zero(0);
  Transformer model = test::tiny_model(3);
  const NamedTensors trained = all_parameters(model);
  auto training = make_parallelism(cfg)->train(model, trained, cfg.optim, "test");
  ASSERT_EQ(training->stepped().size(), trained.size());
  for (size_t i = 0; i < trained.size(); ++i) {
    EXPECT_EQ(training->stepped()[i].first, trained[i].first);
    EXPECT_TRUE(training->stepped()[i].second.is_same(trained[i].second));
  }
  EXPECT_EQ(training->gradient_parts_over(), nullptr);
  EXPECT_EQ(&training->optimizer_state(), static_cast<OptimizerState*>(&training->optimizer()));
}

// Fully sharded, in one process (a world of one): the optimizer steps the
// shards, the model's own tensors are emptied, a frozen copy and a model the
// layout initialises are sharded alike, and end() frees what only training needed.
TEST(Parallelism, TheShardedLayoutStepsShardsAndFreesThemAtTheEnd) {
  const Config cfg = with_zero(3);
  auto parallel = make_parallelism(cfg);
  Transformer whole = test::tiny_model(3);
  Transformer made = parallel->initialised_model(whole->cfg, 3);
  for (auto& p : made->parameters()) EXPECT_EQ(p.numel(), 0) << "a parameter is whole in a sharded model";
  // The same values as the whole model's init_weights(3), gathered by a forward.
  auto x = torch::randint(0, whole->cfg.vocab_size, {2, 8}, torch::TensorOptions().dtype(torch::kLong));
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(made->forward(x), whole->forward(x)));
  }
  auto training = parallel->train(made, all_parameters(made), cfg.optim, "test");
  EXPECT_FALSE(training->stepped().empty());
  int64_t shard_elements = 0;
  for (auto& [name, shard] : training->stepped()) shard_elements += shard.numel();
  int64_t model_elements = 0;
  for (auto& p : whole->parameters()) model_elements += p.numel();
  EXPECT_GE(shard_elements, model_elements);  // a world of one: each shard is its whole unit, padded
  EXPECT_GT(training->state_bytes(), 0);
  Transformer frozen = parallel->frozen_copy(made);
  for (auto& p : frozen->parameters()) EXPECT_EQ(p.numel(), 0);
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(torch::equal(frozen->forward(x), whole->forward(x)));
  }
  training->end();
  EXPECT_TRUE(training->stepped().empty());
  EXPECT_EQ(training->state_bytes(), 0);
  {
    torch::NoGradGuard no_grad;  // the model stays sharded, and whole in value, after training
    EXPECT_TRUE(torch::equal(made->forward(x), whole->forward(x)));
  }
}

// The seam's rule, checked on the source: the layout's type and the dist.zero
// branches appear only in the layouts (train/*parallelism*, the sharded
// builders of train/stage_models and train/zero3_state), in distributed/, and
// where the key is defined and its memory estimated (core/config, sweep/rank_memory).
TEST(Parallelism, NothingOutsideTheLayoutsAsksWhichOneItIs) {
  namespace fs = std::filesystem;
  const fs::path src = fs::path(UNDO_SOURCE_DIR) / "src";
  const std::vector<std::string> allowed = {"distributed/",       "train/parallelism",   "train/sharded_parallelism",
                                            "train/replicated_parallelism", "train/stage_models.cpp",
                                            "train/zero3_state", "core/config.cpp",    "sweep/rank_memory.cpp"};
  const std::vector<std::string> asking = {"Zero3", "dist.zero ==", "dist.zero !=", "dist.zero >", "dist.zero <",
                                           "dynamic_pointer_cast<Zero", "GradReducer"};
  int files = 0;
  for (auto& entry : fs::recursive_directory_iterator(src)) {
    if (!entry.is_regular_file()) continue;
    const std::string rel = fs::relative(entry.path(), src).string();
    bool exempt = false;
    for (auto& a : allowed) exempt = exempt || rel.rfind(a, 0) == 0;
    if (exempt) continue;
    ++files;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    for (auto& word : asking)
      EXPECT_EQ(text.str().find(word), std::string::npos) << "src/" << rel << " names " << word;
  }
  EXPECT_GT(files, 100);
}

}  // namespace
}  // namespace undo
