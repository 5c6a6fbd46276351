// Hugging Face models in and out, checked against the real transformers
// library: tiny random models of each family made and run by transformers
// (tests/hf/hf_models.py) are imported and must give its logits; undo's
// exports must load in transformers and give undo's. Skipped, saying so,
// where the Python packages are missing (launch/setup installs them; CI runs them).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/fs.h"
#include "core/json_value.h"
#include "core/sha256.h"
#include "formats/hf_config.h"
#include "model/hf_checkpoint.h"
#include "model/safetensors.h"
#include "numerics.h"
#include "test_util.h"
#include "train/checkpoint.h"

namespace undo {
namespace {

const std::string kScript = std::string(UNDO_SOURCE_DIR) + "/tests/hf/hf_models.py";

bool have_transformers() {
  return test::python_has("transformers, safetensors");
}

#define SKIP_WITHOUT_TRANSFORMERS()                                                                          \
  if (!have_transformers())                                                                                  \
  GTEST_SKIP() << "transformers or safetensors is missing from " << UNDO_PYTHON                             \
               << ": skipped (launch/setup installs them; CI runs these tests)"

// undo's kernels against transformers' (PyTorch's eager ones) on the same
// fp32 weights: the largest of these models' sums has 320 terms (the
// vocabulary), through 5 stages (embedding, up to 3 blocks, head).
const test::Tolerance kAgainstTransformers = test::fp32_reordered(320, 5);

torch::Tensor logits_of(Transformer& model, const torch::Tensor& tokens) {
  torch::NoGradGuard no_grad;
  model->eval();
  return model->forward(tokens);
}

// An export's config.json against the one imported, field by field: each of
// its fields, with its value and in its place, except dtype and torch_dtype,
// which name the exported tensors' `dtype`; and generation_config.json whole.
void expect_config_kept(const std::string& imported, const std::string& exported, const std::string& dtype) {
  const JsonValue original = read_json_file(imported + "/config.json"), written = read_json_file(exported + "/config.json");
  ASSERT_GE(written.object().size(), original.object().size());
  for (size_t i = 0; i < original.object().size(); ++i) {
    const auto& [key, value] = original.object()[i];
    EXPECT_EQ(written.object()[i].first, key) << "config.json: field " << i;
    if (key == "dtype" || key == "torch_dtype") EXPECT_EQ(written.object()[i].second.string(), dtype) << key;
    else EXPECT_EQ(json_text(written.object()[i].second), json_text(value)) << "config.json: " << key;
  }
  for (size_t i = original.object().size(); i < written.object().size(); ++i)
    EXPECT_EQ(written.object()[i].first, "dtype") << "config.json: a field the original lacks";
  for (const char* key : {"bos_token_id", "eos_token_id", "max_position_embeddings"})
    EXPECT_TRUE(original.find(key)) << "the test's model should have " << key;
  if (file_exists(imported + "/generation_config.json")) {
    EXPECT_EQ(json_text(read_json_file(exported + "/generation_config.json")),
              json_text(read_json_file(imported + "/generation_config.json")));
  }
}

class HfFamilies : public ::testing::TestWithParam<std::string> {};

// transformers makes and runs the model; undo imports it and must agree.
// Then undo exports what it imported, transformers loads the export, and it
// must give undo's logits.
TEST_P(HfFamilies, ImportGivesTransformersLogitsAndExportLoadsBack) {
  SKIP_WITHOUT_TRANSFORMERS();
  const std::string family = GetParam();
  auto dir = test::temp_dir("hf_" + family);
  const std::string made = dir + "/made", exported = dir + "/exported";
  ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " make " + family + " " + made + " 2>&1"), 0);
  auto tokens = read_safetensors(made + "/tokens.safetensors").at("tokens");
  auto reference = read_safetensors(made + "/reference.safetensors").at("logits");

  // Large models come in shards; the Qwen2 one is saved so.
  EXPECT_EQ(file_exists(made + "/model.safetensors.index.json"), family == "qwen2");
  HfModelConfig hf;
  Transformer model = read_hf_model(made, 64, &hf);
  EXPECT_EQ(hf_model_type(hf.family), family);
  auto ours = logits_of(model, tokens);
  ASSERT_EQ(ours.sizes(), reference.sizes());
  test::expect_tensors_close(reference, ours, kAgainstTransformers, family + ": undo's logits against transformers'");

  // Exported twice: with undo's own config.json, and with the imported one
  // written back (what `undo export` does for an imported model).
  const HfOrigin origin{json_text(read_json_file(made + "/config.json")),
                        file_exists(made + "/generation_config.json")
                            ? json_text(read_json_file(made + "/generation_config.json")) : ""};
  EXPECT_FALSE(write_hf_model(model, exported, "float32", -1, -1, -1));
  EXPECT_TRUE(write_hf_model(model, exported + "-kept", "float32", -1, -1, -1, origin));
  for (const std::string& out : {exported, exported + "-kept"}) {
    const std::string theirs_file = out + "/theirs.safetensors";
    ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " logits " + out + " " + made +
                                "/tokens.safetensors " + theirs_file + " 2>&1"),
              0);
    auto theirs = read_safetensors(theirs_file).at("logits");
    test::expect_tensors_close(ours, theirs, kAgainstTransformers, family + ": transformers on " + out);
  }
  expect_config_kept(made, exported + "-kept", "float32");
}

INSTANTIATE_TEST_SUITE_P(Families, HfFamilies, ::testing::Values("llama", "qwen2", "gemma", "gemma2"),
                         [](const auto& info) { return info.param; });

// undo's own demo model (Gemma-style, exact GELU) exports as a Gemma that
// transformers runs the same, with undo's sentencepiece tokenizer, which
// AutoTokenizer reads to the ids undo-data gave the evaluation prompts.
TEST(HfExport, TheDemoModelLoadsAsAGemmaWithItsTokenizer) {
  SKIP_WITHOUT_TRANSFORMERS();
  if (!test::python_has("sentencepiece, google.protobuf"))
    GTEST_SKIP() << "sentencepiece or protobuf is missing from " << UNDO_PYTHON
                 << " (transformers reads a tokenizer.model with them): skipped (launch/setup installs them)";
  auto dir = test::temp_dir("hf_demo");
  Config cfg = test::tiny_config(dir + "/run");
  Transformer model(cfg.model);
  model->init_weights(3);
  {
    torch::NoGradGuard no_grad;  // norms away from their zero start, so that they matter
    for (auto& p : model->parameters())
      if (p.dim() == 1) p.normal_(0.0, 0.3);
  }
  EXPECT_EQ(hf_family_for(model->cfg), HfFamily::gemma);
  CheckpointMeta meta;
  meta.model = model->cfg;
  meta.stage = "pretrain";
  save_checkpoint(dir + "/model.ckpt", meta, model, nullptr);
  std::string out;
  ASSERT_EQ(test::run_undo("export --format hf --model " + dir + "/model.ckpt --data.dir " + test::tiny_data_dir() +
                           " --out " + dir + "/hf", &out), 0) << out;
  auto tokens = torch::randint(0, cfg.model.vocab_size, {2, 16}, torch::kLong);
  write_safetensors(dir + "/tokens.safetensors", {{"tokens", tokens}}, {});
  ASSERT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " logits " + dir + "/hf " + dir +
                              "/tokens.safetensors " + dir + "/theirs.safetensors 2>&1"),
            0);
  test::expect_tensors_close(logits_of(model, tokens), read_safetensors(dir + "/theirs.safetensors").at("logits"),
                             kAgainstTransformers, "demo model as a Gemma");
  EXPECT_EQ(test::run_command(std::string(UNDO_PYTHON) + " " + kScript + " prompts " + dir + "/hf " +
                              test::tiny_data_dir() + "/eval_prompts.jsonl 2>&1", &out), 0) << out;
  // An export replaces an earlier export, and nothing else: a directory of the user's is left as it is.
  EXPECT_NE(read_file(dir + "/hf/undo-export.json").find("model.ckpt"), std::string::npos);
  const std::string again = "export --format hf --model " + dir + "/model.ckpt --data.dir " + test::tiny_data_dir();
  EXPECT_EQ(test::run_undo(again + " --out " + dir + "/hf", &out), 0) << out;
  make_dirs(dir + "/mine");
  write_file_atomic(dir + "/mine/config.json", "{\"mine\": true}");
  EXPECT_EQ(test::run_undo(again + " --out " + dir + "/mine", &out), 2) << out;
  EXPECT_NE(out.find("holds files that undo did not write"), std::string::npos) << out;
  EXPECT_EQ(read_file(dir + "/mine/config.json"), "{\"mine\": true}");
  EXPECT_FALSE(file_exists(dir + "/mine/model.safetensors"));
  // A model with no recorded tokenizer and no data to take one from is refused: an export without a tokenizer
  // used to be written, and exit 0.
  EXPECT_EQ(test::run_undo("export --format hf --model " + dir + "/model.ckpt --data.dir " + dir + "/absent --out " + dir +
                           "/untokenized", &out), 2) << out;
  EXPECT_NE(out.find("no tokenizer for"), std::string::npos) << out;
  EXPECT_FALSE(file_exists(dir + "/untokenized"));
}

// What transformers would compute differently, or undo cannot, is refused by
// key with exit 2, and nothing is written.
TEST(HfImport, UnsupportedConfigsAndMismatchedWeightsAreRefusedByName) {
  auto dir = test::temp_dir("hf_refused");
  ModelConfig m;
  m.vocab_size = 50, m.d_model = 16, m.n_layers = 2, m.n_heads = 2, m.d_ff = 24, m.seq_len = 16;
  m.activation = "silu", m.tied_embeddings = false, m.embed_scale = false;
  Transformer model(m);
  write_hf_model(model, dir + "/ok", "float32", -1, 2, -1);
  const std::string config = read_file(dir + "/ok/config.json");
  const std::string weights = read_file(dir + "/ok/model.safetensors");
  auto case_dir = [&](const std::string& name, const std::string& cfg_text, const std::string& st) {
    const std::string d = dir + "/" + name;
    make_dirs(d);
    write_file_atomic(d + "/config.json", cfg_text);
    write_file_atomic(d + "/model.safetensors", st);
    return d;
  };
  auto edit = [&](const std::string& from, const std::string& to) {
    auto at = config.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return config.substr(0, at) + to + config.substr(at + from.size());
  };
  auto refused = [&](const std::string& name, const std::string& cfg_text, const std::string& st,
                     const std::string& words) {
    const std::string d = case_dir(name, cfg_text, st);
    std::string out;
    EXPECT_EQ(test::run_undo("import --from-hf " + d + " --run-dir " + d + "/run", &out), 2) << name << ": " << out;
    EXPECT_NE(out.find(words), std::string::npos) << name << ": " << out;
    EXPECT_FALSE(file_exists(d + "/run/model.ckpt")) << name;
    EXPECT_FALSE(file_exists(d + "/run")) << name << ": the run directory was made";
  };
  std::string out;
  ASSERT_EQ(test::run_undo("import --from-hf " + dir + "/ok --run-dir " + dir + "/ok-run", &out), 0) << out;
  // An import replaces an earlier import, never another stage's model.
  EXPECT_EQ(test::run_undo("import --from-hf " + dir + "/ok --run-dir " + dir + "/ok-run", &out), 0) << out;
  CheckpointMeta pretrained;
  pretrained.model = model->cfg;
  pretrained.stage = "pretrain";
  make_dirs(dir + "/trained");
  save_checkpoint(dir + "/trained/model.ckpt", pretrained, model, nullptr);
  const std::string before = read_file(dir + "/trained/model.ckpt");
  EXPECT_EQ(test::run_undo("import --from-hf " + dir + "/ok --run-dir " + dir + "/trained", &out), 2) << out;
  EXPECT_NE(out.find("model.ckpt' exists and undo did not write it"), std::string::npos) << out;
  EXPECT_EQ(read_file(dir + "/trained/model.ckpt"), before);
  refused("type", edit("\"model_type\": \"llama\"", "\"model_type\": \"mistral\""), weights,
          "config.json: model_type = \"mistral\"");
  refused("bias", edit("\"attention_bias\": false", "\"attention_bias\": true"), weights,
          "config.json: attention_bias");
  refused("rope", edit("\"rope_type\": \"default\"", "\"rope_type\": \"yarn\", \"factor\": 2"), weights,
          "rope_parameters.rope_type = \"yarn\"");
  refused("heads", edit("\"num_attention_heads\": 2", "\"num_attention_heads\": 0"), weights,
          "config.json: num_attention_heads = 0");
  refused("layers", edit("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"), weights,
          "lack model.layers.2.input_layernorm.weight");
  refused("shape", edit("\"intermediate_size\": 24", "\"intermediate_size\": 20"), weights,
          "model.layers.0.mlp.gate_proj.weight has shape");
  refused("json", config.substr(0, config.size() / 2), weights, "config.json: not valid JSON");
  refused("truncated", config, weights.substr(0, weights.size() - 9), "model.safetensors");
  std::string huge = weights;
  const uint64_t n = uint64_t(1) << 40;
  std::memcpy(huge.data(), &n, 8);
  refused("header", config, huge, "model.safetensors");
  // A tensor that no model of this config has.
  auto extra = read_safetensors(dir + "/ok/model.safetensors");
  std::vector<std::pair<std::string, torch::Tensor>> with_extra(extra.begin(), extra.end());
  with_extra.emplace_back("model.layers.0.self_attn.o_proj.bias", torch::zeros({16}));
  write_safetensors(dir + "/extra.safetensors", with_extra, {});
  refused("extra", config, read_file(dir + "/extra.safetensors"), "tensor model.layers.0.self_attn.o_proj.bias is not");
  // What no Hugging Face family computes is not exported.
  ModelConfig capped = test::tiny_config(dir + "/x").model;
  capped.softcap = 30;
  Transformer capped_model(capped);
  EXPECT_THROW(write_hf_model(capped_model, dir + "/capped", "float32", -1, -1, -1), InputError);
  EXPECT_FALSE(file_exists(dir + "/capped/config.json"));
}

// Issue 26, class 8: imported weights are checked. A NaN or infinite weight
// used to be accepted silently, and a FIFO or device given as
// model.safetensors hung the import; each is refused with exit 2 naming the
// tensor or the file.
TEST(HfImport, NonFiniteWeightsAndSpecialFilesAreRefusedByName) {
  auto dir = test::temp_dir("hf_special");
  ModelConfig m;
  m.vocab_size = 50, m.d_model = 16, m.n_layers = 1, m.n_heads = 2, m.d_ff = 24, m.seq_len = 16;
  m.activation = "silu", m.tied_embeddings = false, m.embed_scale = false;
  std::string out;
  for (float bad : {std::nanf(""), INFINITY}) {
    Transformer model(m);
    {
      torch::NoGradGuard no_grad;
      model->named_parameters()["layers.0.mlp.up.weight"][3][5] = bad;
    }
    const std::string d = dir + (std::isnan(bad) ? "/nan" : "/inf");
    write_hf_model(model, d, "float32", -1, 2, -1);
    EXPECT_EQ(test::run_undo("import --from-hf " + d + " --run-dir " + d + "/run", &out), 2) << out;
    EXPECT_NE(out.find("model.layers.0.mlp.up_proj.weight holds " + std::string(std::isnan(bad) ? "1 NaN" : "0 NaN and 1 infinite")),
              std::string::npos) << out;
    EXPECT_FALSE(file_exists(d + "/run/model.ckpt"));
  }
  Transformer ok(m);
  write_hf_model(ok, dir + "/fifo", "float32", -1, 2, -1);
  std::filesystem::remove(dir + "/fifo/model.safetensors");
  ASSERT_EQ(::mkfifo((dir + "/fifo/model.safetensors").c_str(), 0600), 0);
  make_dirs(dir + "/device");
  std::filesystem::copy_file(dir + "/fifo/config.json", dir + "/device/config.json");
  std::filesystem::create_symlink("/dev/zero", dir + "/device/model.safetensors");
  for (auto [name, kind] : {std::pair{"fifo", "a FIFO"}, {"device", "a character device"}}) {
    const std::string d = dir + "/" + name;
    // `timeout`: on failure the test must end, not hang as the import did.
    EXPECT_EQ(test::run_command("timeout 60 " + std::string(UNDO_BINARY) + " import --from-hf " + d + " --run-dir " +
                                    d + "/run 2>&1",
                                &out),
              2)
        << out;
    EXPECT_NE(out.find("model.safetensors' is " + std::string(kind) + ", not a file"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace undo

namespace undo {
namespace {

// A Hugging Face model with its own BPE tokenizer, end to end on 2 cores:
// imported, its data prepared with its own vocabulary, unlearned, distilled
// into a fresh student of its own architecture, attacked, and exported; the
// export loads in transformers (model and tokenizer) and computes undo's logits.
TEST(HfPipeline, AnImportedModelIsUnlearnedDistilledAttackedAndExported) {
  SKIP_WITHOUT_TRANSFORMERS();
  auto dir = test::temp_dir("hf_pipeline");
  const std::string py = std::string(UNDO_PYTHON) + " ";
  const std::string text = std::string(UNDO_SOURCE_DIR) + "/tests/hf/multilingual.txt";
  ASSERT_EQ(test::run_command(py + UNDO_SOURCE_DIR + "/tests/hf/hf_tokenizers.py train llama3 " + text + " " + dir +
                              "/tok 2>&1"), 0);
  ASSERT_EQ(test::run_command(py + kScript + " make llama " + dir + "/model " + dir + "/tok 2>&1"), 0);
  std::string out;
  ASSERT_EQ(test::run_undo("import --from-hf " + dir + "/model --run-dir " + dir + "/import --model.seq_len 32", &out),
            0) << out;
  // The import keeps the model's tokenizer beside the checkpoint, which records its hash and place.
  EXPECT_EQ(read_file(dir + "/import/tokenizer/tokenizer.json"), read_file(dir + "/model/tokenizer.json"));
  // With the model's config.json, against whose special tokens data prepared from the copy is checked.
  EXPECT_EQ(read_file(dir + "/import/tokenizer/config.json"), read_file(dir + "/model/config.json"));
  CheckpointMeta imported = read_checkpoint_meta(dir + "/import/model.ckpt");
  EXPECT_EQ(imported.extra.at("tokenizer_sha256"), sha256_file(dir + "/model/tokenizer.json"));
  EXPECT_EQ(imported.extra.at("tokenizer_dir"), std::filesystem::absolute(dir + "/import/tokenizer").string());
  // The walk-through of docs/DATA.md ("Your own model, offline") and docs/USAGE.md's commands ("Use your
  // own model"): the language setting with no packages, English from the test fixtures' text directory
  // and the Korean documents of a JSONL file (made from Korean lines), tokenized by the model's tokenizer.
  const std::string english = std::filesystem::path(test::tiny_data_dir()).parent_path().string() + "/english_txt";
  std::string korean, korean_jsonl;
  for (auto& line : {"오늘은 날씨가 맑고 바람이 조금 붑니다.", "이 프로그램은 언어 모델에서 특정 능력을 지우는 방법을 연구합니다.",
                     "서울에서 부산까지 기차로 약 2시간 40분이 걸립니다!", "한국어 문장과 영어 단어가 섞인 줄도 있습니다."})
    korean += std::string(line) + "\\n";
  for (int i = 0; i < 30; ++i) korean_jsonl += "{\"id\": " + std::to_string(i) + ", \"text\": \"" + korean + korean + "\"}\n";
  write_file_atomic(dir + "/korean.jsonl", korean_jsonl);
  ASSERT_EQ(test::run_undo("data prepare --config " + std::string(UNDO_SOURCE_DIR) + "/configs/lang-en-ko.ini" +
                           " --data.tokenizer " + dir + "/model --data.dir " + dir + "/data --data.sources " + dir +
                           "/no_packages --data.forget_sources '' --data.english_dirs " + english +
                           " --data.forget_dirs " + dir + "/korean.jsonl --data.val_fraction 0.2", &out), 0) << out;
  EXPECT_NE(read_file(dir + "/data/manifest.json").find("\"korean.train\": {\"documents\": "), std::string::npos);
  EXPECT_NE(read_file(dir + "/data/manifest.json").find("\"tokenizer\": \"tokenizer.json\""), std::string::npos);
  // configs/own-model.ini has no model keys: every stage takes the imported architecture. Tiny budgets here.
  const std::string common = " --config " + std::string(UNDO_SOURCE_DIR) + "/configs/own-model.ini --data.dir " + dir +
                             "/data --run.threads 2 --train.batch_size 4 --eval.batches 1";
  ASSERT_EQ(test::run_undo("unlearn --base " + dir + "/import/model.ckpt --run-dir " + dir + "/unlearn" + common +
                           " --unlearn.steps 3 --train.eval_every 3", &out), 0) << out;
  ASSERT_EQ(test::run_undo("distill --teacher " + dir + "/unlearn/model.ckpt --run-dir " + dir + "/distill" + common +
                           " --distill.steps 4 --distill.check_every 2 --distill.stop_metric none", &out), 0) << out;
  CheckpointMeta student = read_checkpoint_meta(dir + "/distill/model.ckpt");
  EXPECT_EQ(student.model.activation, "silu");
  EXPECT_FALSE(student.model.tied_embeddings);
  EXPECT_EQ(student.model.kv_heads(), 2);
  EXPECT_EQ(student.model.rope_scaling, "llama3:4:1:2:16");
  ASSERT_EQ(test::run_undo("relearn --model " + dir + "/distill/model.ckpt --run-dir " + dir + "/relearn" + common +
                           " --relearn.lrs 1e-3 --relearn.steps 2 --relearn.eval_every 1", &out), 0) << out;
  EXPECT_NE(read_file(dir + "/relearn/summary.json").find("forget_ce"), std::string::npos);
  ASSERT_EQ(test::run_undo("export --format hf --model " + dir + "/distill/model.ckpt --data.dir " + dir +
                           "/data --out " + dir + "/exported", &out), 0) << out;
  for (auto f : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(file_exists(dir + "/exported/" + f)) << f;
  auto tokens = torch::randint(0, student.model.vocab_size, {2, 12}, torch::kLong);
  write_safetensors(dir + "/tokens.safetensors", {{"tokens", tokens}}, {});
  ASSERT_EQ(test::run_command(py + kScript + " logits " + dir + "/exported " + dir + "/tokens.safetensors " + dir +
                              "/theirs.safetensors 2>&1"), 0);
  Transformer distilled = load_model(dir + "/distill/model.ckpt");
  test::expect_tensors_close(logits_of(distilled, tokens), read_safetensors(dir + "/theirs.safetensors").at("logits"),
                             kAgainstTransformers, "own model, distilled");
  // The exported tokenizer is the model's: transformers encodes the text as undo-data did.
  ASSERT_EQ(test::run_command(py + UNDO_SOURCE_DIR + "/tests/hf/hf_tokenizers.py encode " + dir + "/exported " + text +
                              " " + dir + "/ids.jsonl 2>&1"), 0);
  ASSERT_EQ(test::run_command(py + UNDO_SOURCE_DIR + "/tests/hf/hf_tokenizers.py encode " + dir + "/model " + text +
                              " " + dir + "/ids_model.jsonl 2>&1"), 0);
  EXPECT_EQ(read_file(dir + "/ids.jsonl"), read_file(dir + "/ids_model.jsonl"));
  // Without --data.dir the export still ships the model's tokenizer: the distilled model's from the data its
  // stage read, the imported model's from the files its import kept.
  for (auto [model, exported] : {std::pair{"/distill/model.ckpt", "/exported-nodata"}, {"/import/model.ckpt", "/exported-import"}}) {
    ASSERT_EQ(test::run_undo("export --format hf --model " + dir + model + " --data.dir " + dir + "/absent --out " + dir +
                             exported, &out), 0) << out;
    EXPECT_EQ(read_file(dir + exported + "/tokenizer.json"), read_file(dir + "/model/tokenizer.json")) << model;
  }
  // The model's own config.json comes back, changed only where the export changed it (the dtype): through
  // unlearning and distillation into a student of its shape, and straight from the import.
  for (auto exported : {"/exported", "/exported-nodata", "/exported-import"}) {
    SCOPED_TRACE(exported);
    expect_config_kept(dir + "/model", dir + exported, "float32");
    EXPECT_NE(read_file(dir + exported + "/undo-export.json").find("\"config_from\": \"import\""), std::string::npos);
  }
  ASSERT_EQ(test::run_undo("export --format hf --dtype bfloat16 --model " + dir + "/import/model.ckpt --out " + dir +
                           "/exported-bf16", &out), 0) << out;
  expect_config_kept(dir + "/model", dir + "/exported-bf16", "bfloat16");
  // And a benchmark of the user's, scored on the distilled model by the model's tokenizer.
  write_file_atomic(dir + "/questions.jsonl",
                    "{\"question\": \"서울에서 부산까지?\", \"choices\": [\"2시간 40분\", \"10분\"], \"answer\": 0}\n"
                    "{\"question\": \"What is this?\", \"choices\": [\"a model\", \"a train\", \"weather\"], \"answer\": 0}\n");
  ASSERT_EQ(test::run_undo("eval --model " + dir + "/distill/model.ckpt --data.dir " + dir + "/data --mcq " + dir +
                           "/questions.jsonl", &out), 0) << out;
  EXPECT_NE(out.find("\"questions\": 2, \"acc\": "), std::string::npos) << out;
}

}  // namespace
}  // namespace undo
