#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/code_version.h"
#include "core/progress_line.h"
#include "core/error.h"
#include "core/fs.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/tensorboard_events.h"
#include "core/json.h"
#include "model/safetensors.h"
#include "numerics.h"
#include "test_util.h"
#include "train/schedule.h"
#include "train/trainer.h"

using namespace undo;

namespace {

TrainResult train(Config cfg, Transformer model, std::function<bool(int64_t)> stop = {}) {
  auto mix = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix), "train",
                                         cfg.model.seq_len);
  CrossEntropyObjective objective(mix, cfg.model.seq_len);
  Trainer trainer(cfg, "pretrain-base", model, objective, nullptr);
  trainer.stop_after = stop;
  return trainer.run();
}

Transformer fresh(const Config& cfg, uint64_t seed) {
  Transformer m(cfg.model);
  m->init_weights(seed);
  return m;
}

// A fresh tiny model (seed 2) and the meta it is saved with.
std::pair<Transformer, CheckpointMeta> tiny_model_and_meta() {
  Config cfg = test::tiny_config(test::temp_dir("run"));
  CheckpointMeta meta;
  meta.model = cfg.model;
  meta.stage = "test";
  return {fresh(cfg, 2), meta};
}

void expect_same_weights(Transformer& a, Transformer& b) {
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

}  // namespace

TEST(Schedule, WarmupCosineConstant) {
  OptimConfig o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup = 10;
  EXPECT_DOUBLE_EQ(learning_rate(o, 0, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate(o, 9, 110), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate(o, 10, 110), 1.0);
  EXPECT_NEAR(learning_rate(o, 60, 110), 0.55, 1e-12);
  EXPECT_NEAR(learning_rate(o, 110, 110), 0.1, 1e-12);
  o.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(o, 80, 110), 1.0);
}

TEST(Train, TinyModelLossFallsInBf16) {
  Config cfg = test::tiny_config(test::temp_dir("run"));
  cfg.train.precision = "bf16";
  cfg.train.steps = 100;
  cfg.train.ckpt_every = 0;
  auto r = train(cfg, fresh(cfg, 1));
  ASSERT_EQ(r.losses.size(), 100u);
  EXPECT_NEAR(r.losses.front(), std::log(320.0), 0.5);  // a fresh model is near uniform
  EXPECT_LT(r.losses.back(), 0.6 * r.losses.front());
}

TEST(Train, GradientAccumulationMatchesOneBigBatch) {
  Config cfg = test::tiny_config(test::temp_dir("a"));
  cfg.train.steps = 3;
  cfg.train.batch_size = 8;
  auto big = train(cfg, fresh(cfg, 1));
  cfg.run.dir = test::temp_dir("b");
  cfg.train.batch_size = 4;
  cfg.train.accum = 2;
  auto accumulated = train(cfg, fresh(cfg, 1));
  // The gradient's sum over the 8 x 32 tokens in another order (two halves, then their sum): 3 steps.
  test::expect_curves_match(big.losses, accumulated.losses, test::fp32_reordered(8 * 32, 3), "2 x 4 rows");
}

TEST(Train, ExactResumeIsBitwiseInFp32) {
  Config cfg = test::tiny_config(test::temp_dir("full"));
  cfg.train.steps = 12;
  cfg.train.ckpt_every = 6;
  Transformer full = fresh(cfg, 5);
  auto a = train(cfg, full);

  cfg.run.dir = test::temp_dir("cut");
  auto b = train(cfg, fresh(cfg, 5), [](int64_t step) { return step == 6; });  // "killed" after step 6
  ASSERT_EQ(b.steps_done, 6);
  cfg.run.resume = true;
  Transformer resumed = fresh(cfg, 999);  // different init: everything must come from the checkpoint
  auto c = train(cfg, resumed);
  ASSERT_EQ(c.losses.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(b.losses[i], a.losses[i]) << "step " << i;
    EXPECT_EQ(c.losses[i], a.losses[6 + i]) << "step " << 6 + i;  // bitwise, not approximately
  }
  expect_same_weights(full, resumed);
  // metrics.jsonl has one line per logged step, none duplicated by the resume.
  std::ifstream in(cfg.run.dir + "/metrics.jsonl");
  std::string line;
  std::vector<std::string> steps;
  while (std::getline(in, line)) steps.push_back(line.substr(0, line.find(',')));
  EXPECT_EQ(steps.size(), 12u / cfg.train.log_every + 1);  // 5, 10 and the final 12
}

// A stopping rule's verdict is checkpointed: a run the rule ended at step 4,
// killed before its stage finished (the FaultInjection sweep caught a
// distillation doing so), resumes ended at step 4. It used to train on to its
// full budget, since the rule's evaluation is not redone on resume.
TEST(Train, AStoppingRulesVerdictSurvivesAResume) {
  Config cfg = test::tiny_config(test::temp_dir("rule"));
  cfg.train.steps = 12;
  cfg.train.ckpt_every = 100;  // no checkpoint but the rule's and the last
  auto mix = std::make_shared<StreamMix>(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix), "train",
                                         cfg.model.seq_len);
  CrossEntropyObjective objective(mix, cfg.model.seq_len);
  Trainer first(cfg, "pretrain-base", fresh(cfg, 5), objective, nullptr);
  first.stopping_rule = [](int64_t step) { return step == 4; };
  auto a = first.run();
  EXPECT_EQ(a.steps_done, 4);
  EXPECT_EQ(a.rule_stopped_at, 4);
  ASSERT_TRUE(latest_valid_checkpoint(cfg.run.dir));
  EXPECT_EQ(read_checkpoint_meta(*latest_valid_checkpoint(cfg.run.dir)).step, 4);
  // The stage was killed here, before it wrote its result; the rerun resumes.
  cfg.run.resume = true;
  Trainer again(cfg, "pretrain-base", fresh(cfg, 5), objective, nullptr);
  again.stopping_rule = [](int64_t) { return false; };  // the rule's evidence is gone with the process
  auto b = again.run();
  EXPECT_EQ(b.steps_done, 4);
  EXPECT_EQ(b.rule_stopped_at, 4);
  EXPECT_TRUE(b.losses.empty()) << "trained on after the rule had ended the run";
}

TEST(Train, FusedAdamWMatchesTheFormula) {
  // optim.fused uses LibTorch's fused kernel; optim.fused = false spells out
  // torch.optim.AdamW's arithmetic. Same gradients, same weights (to rounding).
  OptimConfig o;
  o.weight_decay = 0.1;
  torch::manual_seed(3);
  auto a = torch::randn({40, 30}), b = a.clone(), start = a.clone();
  std::vector<std::pair<std::string, torch::Tensor>> pa{{"w", a}}, pb{{"w", b}};
  o.fused = true;
  AdamW fused(pa, o, nullptr, false);
  o.fused = false;
  AdamW reference(pb, o, nullptr, false);
  for (int step = 0; step < 6; ++step) {
    auto g = torch::randn({40, 30});
    a.mutable_grad() = g.clone();
    b.mutable_grad() = g.clone();
    fused.step(1e-2);
    reference.step(1e-2);
    // Elementwise arithmetic in another order (about 10 roundings an update), compounding each step.
    test::expect_tensors_close(b, a, test::fp32_reordered(10, step + 1), "step " + std::to_string(step));
  }
  EXPECT_GT((a - start).abs().max().item<double>(), 1e-2) << "the optimizer moved the weights";
}

TEST(Checkpoint, CorruptedOrTruncatedIsRefused) {
  auto [model, meta] = tiny_model_and_meta();
  Config cfg = test::tiny_config(test::temp_dir("run"));
  auto dir = test::temp_dir("ck");
  save_checkpoint(dir + "/m.ckpt", meta, model, nullptr);
  Transformer loaded = load_model(dir + "/m.ckpt");
  expect_same_weights(model, loaded);

  std::string bytes = read_file(dir + "/m.ckpt");
  std::string flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x10;
  write_file_atomic(dir + "/flipped.ckpt", flipped);
  write_file_atomic(dir + "/short.ckpt", bytes.substr(0, bytes.size() - 100));
  for (auto name : {"flipped.ckpt", "short.ckpt"}) {
    try {
      load_model(dir + "/" + name);
      FAIL() << name << " was loaded";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      // A flipped byte is found in the block that holds it, named by its tensor.
      if (std::string(name) == "flipped.ckpt") {
        EXPECT_NE(std::string(e.what()).find("is corrupted in tensor model."), std::string::npos) << e.what();
      }
    }
  }
  // A model of another shape is refused with the shapes named.
  cfg.model.d_model = 32;
  Transformer other(cfg.model);
  try {
    load_checkpoint(dir + "/m.ckpt", other, nullptr);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("another shape"), std::string::npos);
  }
}

TEST(Checkpoint, ThePayloadOfAnotherLibTorchIsLoadedOrRefusedByName) {
  auto [model, meta] = tiny_model_and_meta();
  auto dir = test::temp_dir("ck");
  save_checkpoint(dir + "/now.ckpt", meta, model, nullptr);
  EXPECT_EQ(read_checkpoint_meta(dir + "/now.ckpt").libtorch, TORCH_VERSION);
  // A file that says another version wrote it loads when its archive reads (names and shapes are checked).
  meta.libtorch = "1.13.1";
  save_checkpoint(dir + "/old.ckpt", meta, model, nullptr);
  Transformer loaded = load_model(dir + "/old.ckpt");
  expect_same_weights(model, loaded);
  // A version-1 file (one torch archive) whose archive this LibTorch cannot
  // read is refused, naming the file and both versions.
  auto meta_str = unframe_checkpoint(read_file(dir + "/old.ckpt"), "old").first;
  write_file_atomic(dir + "/unreadable.ckpt",
                    frame_checkpoint(meta_str, std::string(4096, 'x'), kCheckpointTorchArchive));
  try {
    load_model(dir + "/unreadable.ckpt");
    FAIL() << "an unreadable payload was loaded";
  } catch (const InputError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("unreadable.ckpt"), std::string::npos) << msg;
    EXPECT_NE(msg.find("1.13.1"), std::string::npos) << msg;
    EXPECT_NE(msg.find(TORCH_VERSION), std::string::npos) << msg;
  }
}

// Files of format version 1 (one torch archive, the optimizer's state in a
// nested archive), as earlier releases wrote them, still load: weights,
// optimizer moments and step.
TEST(Checkpoint, VersionOneFilesOfEarlierReleasesStillLoad) {
  auto [model, meta] = tiny_model_and_meta();
  auto dir = test::temp_dir("ck1");
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  torch::serialize::OutputArchive archive, opt;
  opt.write("step", torch::tensor(int64_t(7)));
  for (auto& [name, p] : named) {
    archive.write("model." + name, p.detach());
    opt.write("exp_avg." + name, torch::full_like(p, 0.25).detach());
    opt.write("exp_avg_sq." + name, torch::full_like(p, 0.5).detach());
  }
  archive.write("optimizer", opt);
  archive.write("rng.torch_cpu", at::detail::getDefaultCPUGenerator().get_state());
  std::ostringstream payload;
  archive.save_to(payload);
  write_file_atomic(dir + "/v1.ckpt",
                    frame_checkpoint(checkpoint_meta_text(meta, TORCH_VERSION), payload.str(), kCheckpointTorchArchive));
  Transformer loaded = load_model(dir + "/v1.ckpt");
  expect_same_weights(model, loaded);
  Transformer again = fresh(test::tiny_config(test::temp_dir("run")), 9);
  std::vector<std::pair<std::string, torch::Tensor>> again_named;
  for (auto& p : again->named_parameters()) again_named.emplace_back(p.key(), p.value());
  AdamW adamw(again_named, OptimConfig{}, nullptr, false);
  EXPECT_EQ(load_checkpoint(dir + "/v1.ckpt", again, &adamw).step, meta.step);
  expect_same_weights(model, again);
  EXPECT_EQ(adamw.steps(), 7);
  for (size_t i = 0; i < named.size(); ++i) {
    EXPECT_TRUE(torch::equal(adamw.exp_avg()[i], torch::full_like(named[i].second, 0.25))) << named[i].first;
    EXPECT_TRUE(torch::equal(adamw.exp_avg_sq()[i], torch::full_like(named[i].second, 0.5))) << named[i].first;
  }
  // Saved again, it is a version-3 file with the same tensors.
  save_checkpoint(dir + "/v3.ckpt", meta, again, &adamw);
  EXPECT_EQ(read_file(dir + "/v3.ckpt").substr(8, 4), std::string("\x03\0\0\0", 4));
  CheckpointReader v3(dir + "/v3.ckpt");
  EXPECT_EQ(v3.read("optimizer.step").item<int64_t>(), 7);
  EXPECT_TRUE(torch::equal(v3.read("model.embed.weight"), model->named_parameters()["embed.weight"]));
}

// Files of format version 2 (a tensor table under one checksum for the whole
// file), as the releases before per-block checksums wrote them, still load:
// weights, optimizer state and step; verified whole when opened.
TEST(Checkpoint, VersionTwoFilesStillLoad) {
  auto [model, meta] = tiny_model_and_meta();
  auto dir = test::temp_dir("ck2");
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (auto& p : model->named_parameters()) named.emplace_back(p.key(), p.value());
  AdamW adamw(named, OptimConfig{}, nullptr, false);
  for (auto& [name, p] : named) p.mutable_grad() = torch::full_like(p, 0.01);
  adamw.step(1e-3);
  meta.step = 5;
  save_checkpoint(dir + "/v3.ckpt", meta, model, &adamw);
  // The same meta and payload under version 2's container.
  auto [meta_text, payload] = unframe_checkpoint(read_file(dir + "/v3.ckpt"), "v3");
  write_file_atomic(dir + "/v2.ckpt", frame_checkpoint(meta_text, payload, kCheckpointTensorTable));
  EXPECT_EQ(read_file(dir + "/v2.ckpt").substr(8, 4), std::string("\x02\0\0\0", 4));
  Transformer again = fresh(test::tiny_config(test::temp_dir("run")), 9);
  std::vector<std::pair<std::string, torch::Tensor>> again_named;
  for (auto& p : again->named_parameters()) again_named.emplace_back(p.key(), p.value());
  AdamW loaded(again_named, OptimConfig{}, nullptr, false);
  CheckpointReader v2(dir + "/v2.ckpt");
  EXPECT_EQ(v2.bytes_verified(), v2.file_bytes());  // the one checksum covers the file
  EXPECT_EQ(load_checkpoint(v2, again, &loaded).step, 5);
  expect_same_weights(model, again);
  EXPECT_EQ(loaded.steps(), 1);
  for (size_t i = 0; i < named.size(); ++i) {
    EXPECT_TRUE(torch::equal(loaded.exp_avg()[i], adamw.exp_avg()[i])) << named[i].first;
    EXPECT_TRUE(torch::equal(loaded.exp_avg_sq()[i], adamw.exp_avg_sq()[i])) << named[i].first;
  }
  // A flipped payload byte fails version 2's one checksum on opening.
  std::string bytes = read_file(dir + "/v2.ckpt");
  bytes[bytes.size() - 200] ^= 0x01;
  write_file_atomic(dir + "/v2-bad.ckpt", bytes);
  EXPECT_NE(test::error_of([&] { CheckpointReader bad(dir + "/v2-bad.ckpt"); }).find("fails its checksum"),
            std::string::npos);
}

// Version 3 verifies each block the first time it is read and no other: a
// slice's read checks the blocks under it, a second read checks nothing, and
// a corrupted block is found only by the read that touches it, naming the
// tensor and the bytes.
TEST(Checkpoint, EachBlockIsVerifiedWhenFirstRead) {
  auto dir = test::temp_dir("ck3");
  CheckpointMeta meta;
  meta.model = test::tiny_config(dir).model;
  std::vector<TensorEntry> plan;
  add_tensor_entry(plan, "a", torch::kFloat, {4096});  // 16 KiB: four 4-KiB blocks
  add_tensor_entry(plan, "b", torch::kFloat, {4096});
  auto a = torch::arange(4096, torch::kFloat), b = -a;
  {
    CheckpointWriter out(dir + "/t.ckpt", meta, plan);
    out.put("a", a);
    out.put("b", b);
    out.commit();
  }
  EXPECT_EQ(checkpoint_block_bytes(40000), 4096u);
  EXPECT_EQ(checkpoint_block_bytes(uint64_t(12) << 30), uint64_t(256) << 10);
  CheckpointReader in(dir + "/t.ckpt");
  const uint64_t head = in.bytes_verified();  // header, meta, index and the table's block
  EXPECT_LT(head, in.file_bytes() / 4);
  auto part = torch::empty({1024});
  in.read_into("b", {4096}, 1024, part);  // one block's worth of b, within at most two blocks
  EXPECT_TRUE(torch::equal(part, b.narrow(0, 1024, 1024)));
  const uint64_t after = in.bytes_verified();
  EXPECT_GT(after, head);
  EXPECT_LE(after - head, 2u * 4096);
  in.read_into("b", {4096}, 1024, part);
  EXPECT_EQ(in.bytes_verified(), after);  // verified once
  EXPECT_TRUE(torch::equal(in.read("a"), a));
  EXPECT_TRUE(torch::equal(in.read("b"), b));
  EXPECT_EQ(in.bytes_verified(), in.file_bytes());
  // A flipped byte in the last element of b: a, and the start of b, still read.
  std::string bytes = read_file(dir + "/t.ckpt");
  bytes[bytes.size() - 1] ^= 0x01;
  write_file_atomic(dir + "/bad.ckpt", bytes);
  CheckpointReader bad(dir + "/bad.ckpt");
  EXPECT_TRUE(torch::equal(bad.read("a"), a));
  bad.read_into("b", {4096}, 0, part);
  auto e = test::error_of([&] { bad.read("b"); });
  EXPECT_NE(e.find("checkpoint '" + dir + "/bad.ckpt' is corrupted in tensor b (elements [0, 4096)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("fail their checksum"), std::string::npos) << e;
  // Its head is intact: only a read of the block finds it.
  EXPECT_EQ(read_checkpoint_meta(dir + "/bad.ckpt").stage, meta.stage);
  // The index itself is under the header's digest.
  bytes = read_file(dir + "/t.ckpt");
  uint32_t meta_bytes;
  std::memcpy(&meta_bytes, bytes.data() + 12, 4);
  bytes[56 + meta_bytes + 20] ^= 0x01;  // a digest of the index
  write_file_atomic(dir + "/bad-index.ckpt", bytes);
  EXPECT_NE(test::error_of([&] { CheckpointReader x(dir + "/bad-index.ckpt"); }).find("fails its checksum"),
            std::string::npos);
}

// The writer: tensors in the planned order only, a slice of any one
// read back without the rest, and a file abandoned half-written never appears.
TEST(Checkpoint, TheTensorTableStreamsInOrderAndReadsSlices) {
  auto dir = test::temp_dir("table");
  CheckpointMeta meta;
  meta.model = test::tiny_config(dir).model;
  std::vector<TensorEntry> plan;
  add_tensor_entry(plan, "a", torch::kFloat, {3, 5});
  add_tensor_entry(plan, "b", torch::kLong, {});
  add_tensor_entry(plan, "c", torch::kBFloat16, {7});
  auto a = torch::arange(15, torch::kFloat).reshape({3, 5}), c = torch::linspace(0, 1, 7).to(torch::kBFloat16);
  {
    CheckpointWriter out(dir + "/t.ckpt", meta, plan);
    out.put("a", a);
    out.put("b", torch::tensor(int64_t(42)));
    out.put("c", c);
    out.commit();
  }
  CheckpointReader in(dir + "/t.ckpt");
  // The meta is padded so that the payload (and every tensor) starts 64-byte aligned in the file.
  uint32_t meta_bytes;
  std::memcpy(&meta_bytes, read_file(dir + "/t.ckpt").data() + 12, 4);
  EXPECT_EQ((56 + meta_bytes) % 64, 0u);
  EXPECT_TRUE(torch::equal(in.read("a"), a));
  EXPECT_EQ(in.read("b").item<int64_t>(), 42);
  EXPECT_TRUE(torch::equal(in.read("c"), c));
  auto part = torch::empty({4});
  in.read_into("a", {3, 5}, 6, part);
  EXPECT_TRUE(torch::equal(part, torch::arange(6, 10, torch::kFloat)));
  EXPECT_NE(test::error_of([&] { in.read_into("a", {5, 3}, 0, part); }).find("tensor a has shape [3, 5], expected [5, 3]"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { in.read("z"); }).find("lacks tensor z"), std::string::npos);
  // Out of order, or stopped short: refused, and nothing at the path.
  {
    CheckpointWriter out(dir + "/bad.ckpt", meta, plan);
    EXPECT_NE(test::error_of([&] { out.put("b", torch::tensor(int64_t(1))); }).find("put where the plan has a"),
              std::string::npos);
  }
  {
    CheckpointWriter out(dir + "/short.ckpt", meta, plan);
    out.put("a", a);
    EXPECT_NE(test::error_of([&] { out.commit(); }).find("1 of 3 tensors put"), std::string::npos);
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/bad.ckpt"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/short.ckpt"));
  for (auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path() << " left behind";
}

TEST(Checkpoint, ResumeSkipsACorruptedLatestCheckpoint) {
  Config cfg = test::tiny_config(test::temp_dir("run"));
  cfg.train.steps = 8;
  cfg.train.ckpt_every = 4;
  train(cfg, fresh(cfg, 3));
  auto latest = step_checkpoint_path(cfg.run.dir, 8);
  std::string bytes = read_file(latest);
  write_file_atomic(latest, bytes.substr(0, bytes.size() / 2));
  auto found = latest_valid_checkpoint(cfg.run.dir);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found, step_checkpoint_path(cfg.run.dir, 4));
}

// A load that fails partway (a corrupted block in the only checkpoint) has
// already written part of the file into the model: --resume refuses to start
// afresh from that, naming the run's checkpoints, instead of training a model
// that is neither the checkpoint nor a fresh initialisation.
TEST(Checkpoint, ResumeRefusesAFreshStartAfterAPartLoad) {
  Config cfg = test::tiny_config(test::temp_dir("run"));
  cfg.train.steps = 4;
  cfg.train.ckpt_every = 4;
  train(cfg, fresh(cfg, 3));
  const auto only = step_checkpoint_path(cfg.run.dir, 4);
  std::string bytes = read_file(only);
  bytes[bytes.size() - 200] ^= 0x01;  // in the payload's last blocks: its head still verifies
  write_file_atomic(only, bytes);
  ASSERT_EQ(latest_valid_checkpoint(cfg.run.dir), only);
  cfg.run.resume = true;
  cfg.train.steps = 8;
  auto e = test::error_of([&] { train(cfg, fresh(cfg, 3)); });
  EXPECT_NE(e.find("reads intact on every rank"), std::string::npos) << e;
  EXPECT_NE(e.find("nothing was trained"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(step_checkpoint_path(cfg.run.dir, 8)));
}

TEST(Export, SafetensorsRoundTrip) {
  Config cfg = test::tiny_config(test::temp_dir("run"));
  Transformer model = fresh(cfg, 4);
  CheckpointMeta meta;
  meta.model = cfg.model;
  meta.stage = "test";
  auto dir = test::temp_dir("st");
  save_checkpoint(dir + "/m.ckpt", meta, model, nullptr);
  std::string out;
  ASSERT_EQ(test::run_undo("export --format safetensors --model " + dir + "/m.ckpt --out " + dir + "/m.safetensors",
                           &out),
            0)
      << out;
  auto tensors = read_safetensors(dir + "/m.safetensors");
  auto params = model->named_parameters();
  ASSERT_EQ(tensors.size(), params.size());
  for (auto& p : params) {
    ASSERT_TRUE(tensors.count(p.key())) << p.key();
    EXPECT_TRUE(torch::equal(tensors[p.key()], p.value())) << p.key();
  }
  std::string header = read_file(dir + "/m.safetensors").substr(8, 200);
  EXPECT_NE(header.find("\"__metadata__\""), std::string::npos);
  // Python reads it with nothing but json and numpy (what the safetensors library does underneath).
  if (!test::python_has("numpy"))
    GTEST_SKIP() << "numpy is missing from " << UNDO_PYTHON << ": skipped (launch/setup installs it; CI runs it)";
  std::string py =
      "import json, struct, sys, numpy as np\n"
      "b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]\n"
      "h = json.loads(b[8:8 + n]); h.pop('__metadata__')\n"
      "w = h['embed.weight']; s, e = w['data_offsets']\n"
      "a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(w['shape'])\n"
      "print(len(h), a.shape[0], a.shape[1], repr(float(a[3, 5])))\n";
  std::ofstream(dir + "/read.py") << py;
  FILE* p = ::popen((std::string(UNDO_PYTHON) + " " + dir + "/read.py " + dir + "/m.safetensors").c_str(), "r");
  char buf[256] = "";
  ASSERT_NE(std::fgets(buf, sizeof buf, p), nullptr);
  ASSERT_EQ(::pclose(p), 0);
  std::ostringstream want;
  want << params.size() << " " << cfg.model.vocab_size << " " << cfg.model.d_model << " ";
  EXPECT_EQ(std::string(buf).rfind(want.str(), 0), 0u) << buf;
  EXPECT_NEAR(std::stod(std::string(buf).substr(want.str().size())), model->embed->weight[3][5].item<double>(), 0);
  EXPECT_EQ(test::run_undo("export --format onnx --model " + dir + "/m.ckpt", &out), 2);
}

// run.device = cuda trains on the GPU where there is one; where there is none
// (a CPU-only LibTorch, as in CI) it is refused before anything is written.
TEST(Cli, CudaDeviceWithoutAGpuIsRefusedBeforeAnyFileIsWritten) {
  auto dir = test::temp_dir("device") + "/run";
  std::string args = "pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                     test::tiny_data_dir() + " --run-dir " + dir + " --train.steps 2 --run.device cuda";
  std::string out;
  int rc = test::run_undo(args, &out);
  if (torch::cuda::is_available()) {
    EXPECT_EQ(rc, 0) << out;
    EXPECT_TRUE(file_exists(dir + "/model.ckpt"));
  } else {
    EXPECT_EQ(rc, 2) << out;
    EXPECT_NE(out.find("run.device = cuda"), std::string::npos) << out;
    EXPECT_FALSE(std::filesystem::exists(dir));
  }
  EXPECT_EQ(test::run_undo("pretrain --run.device tpu --run-dir " + dir, &out), 2);
  EXPECT_NE(out.find("run.device"), std::string::npos) << out;
  // NCCL for ranks on the CPU (or from a LibTorch without CUDA) is refused by name, before any file.
  EXPECT_EQ(test::run_undo("pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                               test::tiny_data_dir() + " --dist.backend nccl --run-dir " + dir,
                           &out),
            2);
  EXPECT_NE(out.find("dist.backend = nccl"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(Cli, TheFusedLossKeyChoosesThePathAndBothPretrainAlike) {
  std::string base = "pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                     test::tiny_data_dir() + " --train.steps 8 --train.log_every 1 --train.eval_every 0";
  const std::string chunked = test::temp_dir("chunked"), whole = test::temp_dir("whole");
  std::string out;
  ASSERT_EQ(test::run_undo(base + " --train.loss_chunk 50 --run-dir " + chunked, &out), 0) << out;
  ASSERT_EQ(test::run_undo(base + " --train.fused_loss false --run-dir " + whole, &out), 0) << out;
  auto a = test::losses_of(whole + "/metrics.jsonl"), b = test::losses_of(chunked + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), a.size());
  // The same model and data, the head's loss in chunks of 50 positions or on whole logits: the gradient's
  // sums over the 256 tokens and the 320 classes in another order, for 8 steps.
  test::expect_curves_match(a, b, test::fp32_reordered(test::kTinyLongestSum + 320, 8), "chunked against whole");
  // A value the key refuses, by name.
  EXPECT_EQ(test::run_undo(base + " --train.loss_chunk -1 --run-dir " + test::temp_dir("bad"), &out), 2);
  EXPECT_NE(out.find("train.loss_chunk"), std::string::npos) << out;
}

TEST(Cli, PretrainWritesMetricsConfigAndResumes) {
  auto dir = test::temp_dir("cli");
  std::string ini = std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini";
  std::string args = "pretrain --config " + ini + " --data.dir " + test::tiny_data_dir() + " --run-dir " + dir +
                     " --train.steps 10 --train.eval_every 5 --train.ckpt_every 5";
  std::string out;
  ASSERT_EQ(test::run_undo(args, &out), 0) << out;
  std::string metrics = read_file(dir + "/metrics.jsonl");
  for (auto key : {"\"loss\"", "\"lr\"", "\"tokens_per_s\"", "\"retain_ce\"", "\"forget_ce\"", "\"retain_acc\"",
                   "\"forget_acc\"", "\"acc_mul_word\""})
    EXPECT_NE(metrics.find(key), std::string::npos) << key;
  EXPECT_TRUE(file_exists(dir + "/model.ckpt"));
  EXPECT_TRUE(file_exists(dir + "/summary.json"));
  // The resolved config reproduces the run's settings.
  std::string resolved = read_file(dir + "/config.ini");
  EXPECT_NE(resolved.find("steps = 10"), std::string::npos);
  EXPECT_NE(resolved.find("vocab_size = 320"), std::string::npos);
  // Rerun with --resume from the resolved config: already complete, the metrics stay.
  ASSERT_EQ(test::run_undo("pretrain --config " + dir + "/config.ini --resume", &out), 0) << out;
  EXPECT_NE(out.find("resuming"), std::string::npos) << out;
  // eval on the result.
  ASSERT_EQ(test::run_undo("eval --config " + dir + "/config.ini --model " + dir + "/model.ckpt --run-dir " + dir +
                               "/eval",
                           &out),
            0)
      << out;
  EXPECT_NE(read_file(dir + "/eval/eval.json").find("\"retain_acc\""), std::string::npos);
  // Issue 28: each line says when it was written, and the run directory which code wrote it.
  EXPECT_NE(metrics.find("\"time\": "), std::string::npos) << metrics;
  const auto version = parse_flat_json(read_file(dir + "/version.json"));
  EXPECT_EQ(version.at("commit"), kGitCommit);
  EXPECT_EQ(version.at("dirty"), kGitDirty ? "true" : "false");
  EXPECT_EQ(version.at("libtorch"), TORCH_VERSION);
  ASSERT_EQ(test::run_undo("--version", &out), 0) << out;
  EXPECT_NE(out.find("undo " + std::string(kGitCommit)), std::string::npos) << out;
  EXPECT_NE(out.find("LibTorch " + std::string(TORCH_VERSION) + ", CUDA "), std::string::npos) << out;
  // The commit is the source tree's, as git says (where this is a git checkout).
  std::string head;
  if (test::run_command("git -C " + std::string(UNDO_SOURCE_DIR) + " rev-parse HEAD 2>/dev/null", &head) == 0) {
    EXPECT_EQ(std::string(kGitCommit) + "\n", head) << "rebuild after a commit: the build records the commit it was built at";
  }
}

// Issue 28: every metrics.jsonl line carries its wall-clock time (Unix
// seconds), which plotting tools read as the x axis of time.
TEST(MetricsLog, EveryLineCarriesItsWallClockTime) {
  auto dir = test::temp_dir("metrics_time");
  const auto unix_now = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  };
  const double before = unix_now();
  {
    MetricsLog log(dir + "/metrics.jsonl", true);
    JsonObject line;
    line.add("step", 1).add("loss", 2.5);
    log.write(line);
    log.write(line);
  }
  const double after = unix_now();
  auto lines = read_json_lines(dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 2u);
  for (auto& l : lines) {
    EXPECT_EQ(l.at("loss"), "2.5");
    const double t = std::stod(l.at("time"));
    EXPECT_GE(t, std::floor(before * 1000) / 1000);
    EXPECT_LE(t, after + 0.001);
  }
}

// Issue 28: values held as text go into summaries as JSON numbers exactly
// where JSON would read them as numbers.
TEST(JsonObject, TextThatIsAJsonNumberIsWrittenAsANumber) {
  for (const char* number : {"0", "0.5", "-3", "3072", "1e-05", "2.5E+10"}) EXPECT_TRUE(is_json_number(number)) << number;
  for (const char* text : {"", "nan", "inf", "+1", "0x10", ".5", "1.", "01", "1 ", "noised", "/runs/7"})
    EXPECT_FALSE(is_json_number(text)) << text;
  JsonObject o;
  o.add_text_or_number("alpha", "0.5").add_text_or_number("init", "noised").add_text_or_number("dir", "007");
  EXPECT_EQ(o.str(), "{\"alpha\": 0.5, \"init\": \"noised\", \"dir\": \"007\"}");
}

// Every scalar of a run's TensorBoard events as the tensorboard package's own
// reader (tests/tensorboard/read_events.py) gives them: by (tag, step), each
// point's value in the reader's order.
namespace {
std::map<std::pair<std::string, int64_t>, std::vector<double>> tensorboard_points(const std::string& run_dir) {
  const std::string listing = run_dir + "/tensorboard-points.jsonl";
  EXPECT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + UNDO_SOURCE_DIR + "/tests/tensorboard/read_events.py " +
                              run_dir + "/tensorboard > " + listing),
            0);
  std::map<std::pair<std::string, int64_t>, std::vector<double>> points;
  for (auto& e : read_json_lines(listing)) points[{e.at("tag"), std::stoll(e.at("step"))}].push_back(std::stod(e.at("value")));
  return points;
}
}  // namespace

// Issue 28: a training stage writes TensorBoard events beside metrics.jsonl,
// and the tensorboard package's own reader finds in them every number of
// every line, at its step (as a float32, TensorBoard's type).
TEST(TensorBoard, TheEventsHoldEveryNumberOfMetricsJsonlReadByTheTensorboardPackage) {
  if (!test::python_has("tensorboard"))
    GTEST_SKIP() << "tensorboard is missing from " << UNDO_PYTHON << ": skipped (launch/setup installs it; CI runs this test)";
  auto dir = test::temp_dir("tensorboard");
  std::string out;
  ASSERT_EQ(test::run_undo("pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                               test::tiny_data_dir() + " --run-dir " + dir + "/run --train.steps 10 --train.eval_every 5",
                           &out), 0) << out;
  const auto events = tensorboard_points(dir + "/run");
  std::set<std::pair<std::string, int64_t>> numbers;  // a key two lines of a step hold (tokens) is one point
  for (auto& line : read_json_lines(dir + "/run/metrics.jsonl")) {
    const int64_t step = std::stoll(line.at("step"));
    for (auto& [key, value] : line) {
      if (key == "step" || key == "time" || !is_json_number(value)) continue;
      numbers.insert({key, step});
      auto it = events.find({key, step});
      ASSERT_NE(it, events.end()) << key << " at step " << step;
      EXPECT_EQ(it->second.back(), double(float(std::stod(value)))) << key << " at step " << step;
    }
  }
  EXPECT_EQ(events.size(), numbers.size());
  for (const char* tag : {"loss", "lr", "grad_norm", "tokens_per_s", "retain_ce", "forget_ce"})
    EXPECT_TRUE(events.count({tag, 10})) << tag;
}

// A run killed after its checkpoint at step 5 had logged step 10, then
// resumed from 5: TensorBoard shows each step once, the resumed run's value,
// as metrics.jsonl keeps it (the resumed file's START event drops the rest).
TEST(TensorBoard, AResumedRunHasOnePointPerStep) {
  if (!test::python_has("tensorboard"))
    GTEST_SKIP() << "tensorboard is missing from " << UNDO_PYTHON << ": skipped (launch/setup installs it; CI runs this test)";
  auto dir = test::temp_dir("tensorboard_resumed");
  std::string out;
  ASSERT_EQ(test::run_undo("pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                               test::tiny_data_dir() + " --run-dir " + dir + "/run --train.steps 10 --train.eval_every 5" +
                               " --train.ckpt_every 5 --train.log_every 1",
                           &out), 0) << out;
  std::filesystem::remove(dir + "/run/ckpt/step_00000010.ckpt");  // as if killed before it was written
  ASSERT_EQ(test::run_undo("pretrain --config " + dir + "/run/config.ini --resume", &out), 0) << out;
  ASSERT_NE(out.find("at step 5"), std::string::npos) << out;
  auto points = tensorboard_points(dir + "/run");
  std::map<int64_t, double> losses;
  for (auto& line : read_json_lines(dir + "/run/metrics.jsonl"))
    if (line.count("loss")) losses[std::stoll(line.at("step"))] = std::stod(line.at("loss"));
  ASSERT_EQ(losses.size(), 10u);
  for (auto& [step, loss] : losses) {
    auto& values = points[{"loss", step}];
    ASSERT_EQ(values.size(), 1u) << "loss at step " << step;
    EXPECT_EQ(values[0], double(float(loss))) << "loss at step " << step;
  }
  for (auto& [point, values] : points) EXPECT_EQ(values.size(), 1u) << point.first << " at step " << point.second;
}

// A TensorBoard directory that cannot be written is said once, and the run
// and its metrics.jsonl go on.
TEST(TensorBoard, AnUnwritableEventsDirectoryWarnsOnceAndTheRunGoesOn) {
  auto dir = test::temp_dir("tensorboard_blocked");
  make_dirs(dir + "/run");
  write_file_atomic(dir + "/run/tensorboard", "a file where the directory would go\n");
  std::string out;
  ASSERT_EQ(test::run_undo("pretrain --config " + std::string(UNDO_SOURCE_DIR) + "/configs/tiny.ini --data.dir " +
                               test::tiny_data_dir() + " --run-dir " + dir + "/run --train.steps 10 --train.eval_every 5",
                           &out), 0) << out;
  size_t warnings = 0;
  for (size_t at = out.find("TensorBoard events are not written"); at != std::string::npos;
       at = out.find("TensorBoard events are not written", at + 1))
    ++warnings;
  EXPECT_EQ(warnings, 1u) << out;
  EXPECT_EQ(test::losses_of(dir + "/run/metrics.jsonl").size(), 2u);
}

// The record checksum on the format's published examples (RFC 3720, B.4).
TEST(TensorBoard, Crc32cMatchesTheStandardsExamples) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const std::string zeros(32, '\0'), ones(32, '\xff');
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
}

// Issue 28: a long stage prints done/total, rate and time left, rate-limited
// off a terminal; a short one prints nothing.
TEST(ProgressLine, SaysDoneTotalRateAndTimeLeftAndNothingForAShortStage) {
  testing::internal::CaptureStderr();
  {
    ProgressLine quiet("quick", 10, "items");  // ends within its 5 quiet seconds
    for (int i = 0; i <= 10; ++i) quiet.update(i);
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  testing::internal::CaptureStderr();
  {
    ProgressLine line("long", 10, "items", true, /*quiet_s=*/0, /*interval_s=*/3600);
    for (int i = 0; i <= 10; ++i) line.update(i);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;  // the first line, then the last (rate-limited between)
  EXPECT_EQ(out.rfind("long: 0/10 items, ", 0), 0u) << out;
  EXPECT_NE(out.find("long: 10/10 items, "), std::string::npos) << out;
  EXPECT_NE(out.find(" items/s, "), std::string::npos) << out;
  EXPECT_NE(out.find("left\n"), std::string::npos) << out;
}

// Issue 28: undo's own JSON is read by the one parser: \u escapes (surrogate
// pairs included) decode, numbers keep their spelling, nested values come back
// as JSON text, and what JsonObject writes reads back the same.
TEST(JsonObject, UnicodeEscapesDecodeAndWhatIsWrittenReadsBack) {
  auto v = parse_flat_json(R"({"name": "caf\u00e9 \ud83d\ude42", "n": 1e-05, "t": true, "x": null, "nested": {"a": [1, 2]}})");
  EXPECT_EQ(v.at("name"), "caf\xC3\xA9 \xF0\x9F\x99\x82");
  EXPECT_EQ(v.at("n"), "1e-05");
  EXPECT_EQ(v.at("t"), "true");
  EXPECT_EQ(v.at("x"), "null");
  EXPECT_EQ(v.at("nested"), "{\"a\": [1, 2]}");
  const std::string text = "tab\tquote\" back\\ bell\x07 \xED\x95\x9C";
  JsonObject o;
  o.add("s", text);
  EXPECT_EQ(parse_flat_json(o.str()).at("s"), text);
  EXPECT_THROW(parse_flat_json("{\"a\": 1"), std::exception);
  EXPECT_THROW(parse_flat_json("[1]"), std::exception);
  // \b and \f escaped, and a byte that is not UTF-8 written as U+FFFD: every line written reads back.
  JsonObject odd;
  odd.add("s", std::string("\b\f cut \xED\x95"));
  EXPECT_EQ(odd.str(), "{\"s\": \"\\b\\f cut \xEF\xBF\xBD\"}");
  EXPECT_EQ(parse_flat_json(odd.str()).at("s"), "\b\f cut \xEF\xBF\xBD");
  // Numbers as JSON spells them, by the library's grammar, and nothing around them.
  for (const char* number : {"0.5", "-3", "1e-05", "0", "12345678901234567890123"}) EXPECT_TRUE(is_json_number(number)) << number;
  for (const char* other : {"nan", "+1", "0x10", ".5", "01", "1.", " 1", "1 ", "1 2", "", "-", "true"})
    EXPECT_FALSE(is_json_number(other)) << other;
}
