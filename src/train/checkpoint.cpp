#include "train/checkpoint.h"

#include <cstring>
#include <filesystem>
#include <limits>
#include <iostream>
#include <sstream>
#include <tuple>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"
#include "formats/checkpoint_file.h"

namespace fs = std::filesystem;

namespace undo {

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, Transformer& model,
                     OptimizerState* optimizer) {
  write_checkpoint_bytes(path, checkpoint_bytes(meta, model, optimizer));
}

void write_checkpoint_bytes(const std::string& path, const std::string& bytes) {
  auto dir = fs::path(path).parent_path();
  if (!dir.empty()) make_dirs(dir.string());
  write_file_atomic(path, bytes);
}

std::string checkpoint_bytes(const CheckpointMeta& meta, Transformer& model, OptimizerState* optimizer) {
  torch::serialize::OutputArchive archive;
  for (auto& p : model->named_parameters()) archive.write("model." + p.key(), p.value().detach().to(torch::kCPU));
  if (optimizer) {
    torch::serialize::OutputArchive opt;
    optimizer->save(opt);
    archive.write("optimizer", opt);
  }
  archive.write("rng.torch_cpu", at::detail::getDefaultCPUGenerator().get_state());
  std::ostringstream payload_stream;
  archive.save_to(payload_stream);
  return frame_checkpoint(checkpoint_meta_text(meta, TORCH_VERSION), payload_stream.str());
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  return parse_checkpoint_meta(unframe_checkpoint(read_file(path), path).first, path);
}

namespace {
void read_payload(const std::string& path, torch::serialize::InputArchive& archive, Transformer& model,
                  OptimizerState* optimizer);

// Loads a verified payload into `model` (and `optimizer`); the file is read once by the caller.
void load_payload(const std::string& path, const CheckpointMeta& meta, const std::string& payload,
                  Transformer& model, OptimizerState* optimizer) {
  const auto& a = meta.model;
  const auto& b = model->cfg;
  // What decides the tensors and what they compute together.
  auto shape = [](const ModelConfig& m) {
    return std::make_tuple(m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.kv_heads(), m.head_size(), m.d_ff,
                           m.activation, m.tied_embeddings, m.qkv_bias, m.post_norms);
  };
  UNDO_INPUT_CHECK(shape(a) == shape(b),
                   "checkpoint '", path, "' holds a model of another shape (d_model ", a.d_model, ", layers ",
                   a.n_layers, ", vocab ", a.vocab_size, ") than configured (d_model ", b.d_model, ", layers ",
                   b.n_layers, ", vocab ", b.vocab_size, ")");
  std::istringstream in(payload);
  torch::serialize::InputArchive archive;
  auto first_line = [](const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    return what.substr(0, what.find('\n'));
  };
  try {
    archive.load_from(in);
  } catch (const c10::Error& e) {
    // The checksum held, so the bytes are as written: by another LibTorch, or by something that is not undo.
    if (meta.libtorch != TORCH_VERSION)
      throw InputError("checkpoint '" + path + "' was written by LibTorch " +
                       (meta.libtorch.empty() ? std::string("(unrecorded, before 2.x)") : meta.libtorch) +
                       " and this build's LibTorch " + TORCH_VERSION + " cannot read its payload: " + first_line(e));
    throw InputError("checkpoint '" + path + "': its payload is not a torch archive (made by another program, with "
                     "its checksum recomputed?): " + first_line(e));
  }
  try {
    read_payload(path, archive, model, optimizer);
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "': its payload does not hold this model's tensors as undo writes them: " +
                     first_line(e));
  }
}

// The tensors of a loaded archive into `model`, `optimizer` and the RNG.
void read_payload(const std::string& path, torch::serialize::InputArchive& archive, Transformer& model,
                  OptimizerState* optimizer) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters()) {
    torch::Tensor t;
    UNDO_CHECK(archive.try_read("model." + p.key(), t), "checkpoint '", path, "' lacks parameter ", p.key());
    UNDO_CHECK(t.sizes() == p.value().sizes(), "checkpoint '", path, "': parameter ", p.key(), " has shape ",
               t.sizes(), ", expected ", p.value().sizes());
    p.value().copy_(t);
  }
  if (optimizer) {
    torch::serialize::InputArchive opt;
    UNDO_CHECK(archive.try_read("optimizer", opt), "checkpoint '", path, "' holds no optimizer state to resume");
    optimizer->load(opt);
  }
  torch::Tensor rng;
  if (archive.try_read("rng.torch_cpu", rng)) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
    gen.set_state(rng);
  }
}
}  // namespace

CheckpointMeta load_checkpoint(const std::string& path, Transformer& model, OptimizerState* optimizer) {
  auto [meta_str, payload] = unframe_checkpoint(read_file(path), path);
  CheckpointMeta meta = parse_checkpoint_meta(meta_str, path);
  load_payload(path, meta, payload, model, optimizer);
  return meta;
}

Transformer load_model(const std::string& path, CheckpointMeta* meta_out) {
  auto [meta_str, payload] = unframe_checkpoint(read_file(path), path);
  CheckpointMeta meta = parse_checkpoint_meta(meta_str, path);
  Transformer model(meta.model);
  load_payload(path, meta, payload, model, nullptr);
  if (meta_out) *meta_out = meta;
  return model;
}

std::string step_checkpoint_path(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%08lld.ckpt", static_cast<long long>(step));
  return join_path(join_path(run_dir, "ckpt"), name);
}

namespace {
std::vector<std::string> step_checkpoints(const std::string& run_dir) {
  std::vector<std::string> out;
  auto dir = join_path(run_dir, "ckpt");
  if (!fs::is_directory(dir)) return out;
  for (auto& e : fs::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (name.rfind("step_", 0) == 0 && e.path().extension() == ".ckpt") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::optional<std::string> latest_valid_checkpoint(const std::string& run_dir) {
  auto all = step_checkpoints(run_dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      read_checkpoint_meta(*it);
      return *it;
    } catch (const std::exception& e) {
      std::cerr << "resume: skipping invalid checkpoint: " << e.what() << "\n";
    }
  }
  return std::nullopt;
}

void prune_checkpoints(const std::string& run_dir, int keep) {
  auto all = step_checkpoints(run_dir);
  for (size_t i = 0; i + size_t(keep) < all.size(); ++i) fs::remove(all[i]);
}

}  // namespace undo
