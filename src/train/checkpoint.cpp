#include "train/checkpoint.h"

#include <algorithm>
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

namespace {

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "f32";
    case torch::kBFloat16: return "bf16";
    case torch::kHalf: return "f16";
    case torch::kLong: return "i64";
    case torch::kByte: return "u8";
    default: UNDO_FAIL("checkpoints do not store tensors of dtype ", t);
  }
}

torch::ScalarType dtype_of(const std::string& name) {
  if (name == "f32") return torch::kFloat;
  if (name == "bf16") return torch::kBFloat16;
  if (name == "f16") return torch::kHalf;
  if (name == "i64") return torch::kLong;
  return torch::kByte;  // "u8": parse_tensor_table let no other name through
}

std::string shape_text(const std::vector<int64_t>& shape) { return "[" + c10::Join(", ", shape) + "]"; }

std::string first_line(const c10::Error& e) {
  std::string what = e.what_without_backtrace();
  return what.substr(0, what.find('\n'));
}

}  // namespace

void add_tensor_entry(std::vector<TensorEntry>& entries, const std::string& name, torch::ScalarType dtype,
                      const std::vector<int64_t>& shape) {
  TensorEntry e;
  e.name = name;
  e.dtype = dtype_name(dtype);
  e.shape = shape;
  entries.push_back(std::move(e));
}

CheckpointWriter::CheckpointWriter(const std::string& path, const CheckpointMeta& meta,
                                   const std::vector<TensorEntry>& plan)
    : path_(path) {
  std::string head = layout_tensor_table(plan, &table_);
  if (path.empty()) return;
  auto dir = fs::path(path).parent_path();
  if (!dir.empty()) make_dirs(dir.string());
  file_ = std::make_unique<CheckpointFileWriter>(path, checkpoint_meta_text(meta, TORCH_VERSION), head.size() + table_.data_bytes);
  file_->write(head.data(), head.size());
}

void CheckpointWriter::put(const std::string& name, const torch::Tensor& t) {
  UNDO_CHECK(next_ < table_.entries.size(), "checkpoint '", path_, "': tensor ", name, " put after the plan's last");
  const TensorEntry& e = table_.entries[next_++];
  UNDO_CHECK(e.name == name && e.dtype == dtype_name(t.scalar_type()) && e.shape == t.sizes().vec(), "checkpoint '",
             path_, "': tensor ", name, " (", t.scalar_type(), " ", t.sizes(), ") put where the plan has ", e.name,
             " (", e.dtype, " ", shape_text(e.shape), ")");
  if (!file_) return;
  static const char zeros[64] = {};
  file_->write(zeros, size_t(e.offset - written_));  // the alignment padding
  auto bytes = t.detach().to(torch::kCPU).contiguous();
  file_->write(bytes.data_ptr(), size_t(e.bytes));
  written_ = e.offset + e.bytes;
}

void CheckpointWriter::commit() {
  UNDO_CHECK(next_ == table_.entries.size(), "checkpoint '", path_, "': ", next_, " of ", table_.entries.size(),
             " tensors put");
  if (!file_) return;
  static const char zeros[64] = {};
  file_->write(zeros, size_t(table_.data_bytes - written_));
  file_->commit();
}

// A version-1 file's payload: one torch archive, the optimizer's state in a
// nested archive. Read whole when the file is opened.
struct CheckpointReader::Legacy {
  torch::serialize::InputArchive archive, optimizer;
  bool has_optimizer = false;
  std::map<std::string, torch::Tensor> tensors;  // what was asked for, by its version-2 name

  // The tensor version 2 names `name` ("optimizer.X" is X in the nested archive).
  const torch::Tensor* find(const std::string& name, const std::string& path) {
    if (auto it = tensors.find(name); it != tensors.end()) return &it->second;
    torch::Tensor t;
    try {
      const bool opt = name.rfind("optimizer.", 0) == 0;
      if (opt ? !(has_optimizer && optimizer.try_read(name.substr(10), t)) : !archive.try_read(name, t))
        return nullptr;
    } catch (const c10::Error& e) {
      throw InputError("checkpoint '" + path + "': its payload does not hold this model's tensors as undo writes "
                       "them: " + first_line(e));
    }
    return &(tensors[name] = t);
  }
};

namespace {
// A table's payload head (its length, then the table), verified before it is parsed.
TensorTable verified_tensor_table(const CheckpointFrame& frame, PayloadBlocks& blocks, const std::string& path) {
  blocks.verify(0, std::min<uint64_t>(8, frame.payload_bytes));
  uint64_t table_bytes = 0;
  if (frame.payload_bytes >= 8) std::memcpy(&table_bytes, frame.payload, 8);
  if (frame.payload_bytes > 8) blocks.verify(8, std::min(table_bytes, frame.payload_bytes - 8));
  return parse_tensor_table(frame.payload, frame.payload_bytes, path);
}
}  // namespace

CheckpointReader::CheckpointReader(const std::string& path) : path_(path) {
  file_ = std::make_unique<MappedFile>(path);
  file_bytes_ = file_->size();
  auto frame = check_checkpoint_frame(file_->data(), file_->size(), path);
  meta_ = parse_checkpoint_meta(std::string(frame.meta), path);
  if (frame.version != kCheckpointTorchArchive) {
    blocks_ = std::make_unique<PayloadBlocks>(frame, path);
    table_ = verified_tensor_table(frame, *blocks_, path);
    data_ = frame.payload + table_.data_at;
    return;
  }
  legacy_ = std::make_unique<Legacy>();
  std::istringstream in(std::string(reinterpret_cast<const char*>(frame.payload), size_t(frame.payload_bytes)));
  try {
    legacy_->archive.load_from(in);
  } catch (const c10::Error& e) {
    // The checksum held, so the bytes are as written: by another LibTorch, or by something that is not undo.
    if (meta_.libtorch != TORCH_VERSION)
      throw InputError("checkpoint '" + path + "' was written by LibTorch " +
                       (meta_.libtorch.empty() ? std::string("(unrecorded, before 2.x)") : meta_.libtorch) +
                       " and this build's LibTorch " + TORCH_VERSION + " cannot read its payload: " + first_line(e));
    throw InputError("checkpoint '" + path + "': its payload is not a torch archive (made by another program, with "
                     "its checksum recomputed?): " + first_line(e));
  }
  try {
    legacy_->has_optimizer = legacy_->archive.try_read("optimizer", legacy_->optimizer);
  } catch (const c10::Error& e) {
    throw InputError("checkpoint '" + path + "': its payload does not hold this model's tensors as undo writes them: " +
                     first_line(e));
  }
  file_.reset();  // the archive holds what it needs
}

CheckpointReader::~CheckpointReader() = default;

bool CheckpointReader::has(const std::string& name) const {
  return legacy_ ? legacy_->find(name, path_) != nullptr : table_.find(name) != nullptr;
}

const TensorEntry& CheckpointReader::entry(const std::string& name) const {
  const TensorEntry* e = table_.find(name);
  UNDO_INPUT_CHECK(e, "checkpoint '", path_, "' lacks tensor ", name);
  return *e;
}

const uint8_t* CheckpointReader::verified(const TensorEntry& e, uint64_t first, uint64_t count) const {
  const uint64_t width = tensor_dtype_size(e.dtype);
  try {
    blocks_->verify(table_.data_at + e.offset + first * width, count * width);
  } catch (const CorruptBlock& c) {
    throw CorruptBlock("checkpoint '" + path_ + "' is corrupted in tensor " + e.name + " (elements [" +
                           std::to_string(first) + ", " + std::to_string(first + count) + "): payload bytes [" +
                           std::to_string(c.first) + ", " + std::to_string(c.end) + ") fail their checksum)",
                       c.first, c.end);
  }
  return data_ + e.offset + first * width;
}

torch::Tensor CheckpointReader::read(const std::string& name) const {
  if (legacy_) {
    const torch::Tensor* t = legacy_->find(name, path_);
    UNDO_INPUT_CHECK(t, "checkpoint '", path_, "' lacks tensor ", name);
    return *t;
  }
  const TensorEntry& e = entry(name);
  // Read-only memory seen as a tensor only long enough to be copied.
  const uint8_t* bytes = verified(e, 0, e.numel());
  return torch::from_blob(const_cast<uint8_t*>(bytes), e.shape, dtype_of(e.dtype)).clone();
}

void CheckpointReader::read_into(const std::string& name, const std::vector<int64_t>& shape, int64_t start,
                                 const torch::Tensor& dst) const {
  torch::Tensor part;
  auto check = [&](const std::vector<int64_t>& stored, int64_t numel) {
    UNDO_INPUT_CHECK(stored == shape, "checkpoint '", path_, "': tensor ", name, " has shape ", shape_text(stored),
                     ", expected ", shape_text(shape));
    UNDO_CHECK(start >= 0 && start + dst.numel() <= numel, "checkpoint '", path_, "': elements [", start, ", ",
               start + dst.numel(), ") of ", name, ", which has ", numel);
  };
  if (legacy_) {
    const torch::Tensor* t = legacy_->find(name, path_);
    UNDO_INPUT_CHECK(t, "checkpoint '", path_, "' lacks tensor ", name);
    check(t->sizes().vec(), t->numel());
    part = t->reshape({-1}).narrow(0, start, dst.numel());
  } else {
    const TensorEntry& e = entry(name);
    check(e.shape, int64_t(e.numel()));
    // Only the slice is verified and read.
    const uint8_t* bytes = verified(e, uint64_t(start), uint64_t(dst.numel()));
    part = torch::from_blob(const_cast<uint8_t*>(bytes), {dst.numel()}, dtype_of(e.dtype));
  }
  torch::NoGradGuard no_grad;
  dst.copy_(part.view(dst.sizes()));
}

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, Transformer& model,
                     OptimizerState* optimizer) {
  UnitRunner* sharded = model->runner.get();
  std::vector<TensorEntry> plan;
  if (sharded) {
    for (auto& [name, shape] : sharded->parameter_shapes()) add_tensor_entry(plan, "model." + name, torch::kFloat, shape);
  } else {
    for (auto& p : model->named_parameters())
      add_tensor_entry(plan, "model." + p.key(), p.value().scalar_type(), p.value().sizes().vec());
  }
  if (optimizer) optimizer->plan(plan);
  auto rng = at::detail::getDefaultCPUGenerator().get_state();
  add_tensor_entry(plan, "rng.torch_cpu", rng.scalar_type(), rng.sizes().vec());
  CheckpointWriter out(path, meta, plan);
  if (sharded) {
    sharded->for_each_whole_parameter([&](size_t i, const torch::Tensor& t) { out.put(plan[i].name, t); });
  } else {
    for (auto& p : model->named_parameters()) out.put("model." + p.key(), p.value());
  }
  if (optimizer) optimizer->save(out);
  out.put("rng.torch_cpu", rng);
  out.commit();
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  MappedFile file(path);
  auto frame = check_checkpoint_frame(file.data(), file.size(), path);
  CheckpointMeta meta = parse_checkpoint_meta(std::string(frame.meta), path);
  if (frame.version != kCheckpointTorchArchive) {
    PayloadBlocks blocks(frame, path);
    verified_tensor_table(frame, blocks, path);
  }
  return meta;
}

void load_weights(const CheckpointReader& in, Transformer& model) {
  const auto& a = in.meta().model;
  const auto& b = model->cfg;
  // What decides the tensors and what they compute together.
  auto shape = [](const ModelConfig& m) {
    return std::make_tuple(m.vocab_size, m.d_model, m.n_layers, m.n_heads, m.kv_heads(), m.head_size(), m.d_ff,
                           m.activation, m.tied_embeddings, m.qkv_bias, m.post_norms);
  };
  UNDO_INPUT_CHECK(shape(a) == shape(b),
                   "checkpoint '", in.path(), "' holds a model of another shape (d_model ", a.d_model, ", layers ",
                   a.n_layers, ", vocab ", a.vocab_size, ") than configured (d_model ", b.d_model, ", layers ",
                   b.n_layers, ", vocab ", b.vocab_size, ")");
  torch::NoGradGuard no_grad;
  if (UnitRunner* sharded = model->runner.get()) {
    const auto shapes = sharded->parameter_shapes();
    sharded->read_parameters([&](size_t i, int64_t start, const torch::Tensor& dst) {
      in.read_into("model." + shapes[i].first, shapes[i].second, start, dst);
    });
    return;
  }
  for (auto& p : model->named_parameters()) {
    auto v = p.value();
    in.read_into("model." + p.key(), v.sizes().vec(), 0, v.view({-1}));
  }
}

CheckpointMeta load_checkpoint(const std::string& path, Transformer& model, OptimizerState* optimizer) {
  return load_checkpoint(CheckpointReader(path), model, optimizer);
}

CheckpointMeta load_checkpoint(const CheckpointReader& in, Transformer& model, OptimizerState* optimizer) {
  load_weights(in, model);
  if (optimizer) {
    UNDO_INPUT_CHECK(in.has("optimizer.step"), "checkpoint '", in.path(), "' holds no optimizer state to resume");
    optimizer->load(in);
  }
  if (in.has("rng.torch_cpu")) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
    gen.set_state(in.read("rng.torch_cpu"));
  }
  return in.meta();
}

Transformer load_model(const CheckpointReader& in) {
  Transformer model(in.meta().model);
  load_weights(in, model);
  return model;
}

Transformer load_model(const std::string& path, CheckpointMeta* meta_out) {
  CheckpointReader in(path);
  if (meta_out) *meta_out = in.meta();
  return load_model(in);
}

std::string step_checkpoint_path(const std::string& run_dir, int64_t step) {
  char name[64];
  std::snprintf(name, sizeof name, "step_%08lld.ckpt", static_cast<long long>(step));
  return join_path(join_path(run_dir, "ckpt"), name);
}

namespace {
std::vector<std::string> step_checkpoints(const std::string& run_dir) {  // oldest first
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

std::vector<std::string> step_checkpoints_newest_first(const std::string& run_dir) {
  auto all = step_checkpoints(run_dir);
  std::reverse(all.begin(), all.end());
  return all;
}

std::unique_ptr<CheckpointReader> open_checkpoint_or_skip(const std::string& path) {
  try {
    return std::make_unique<CheckpointReader>(path);
  } catch (const std::exception& e) {
    std::cerr << "resume: skipping invalid checkpoint: " << e.what() << "\n";
    return nullptr;
  }
}

std::unique_ptr<CheckpointReader> open_latest_checkpoint(const std::string& run_dir) {
  for (auto& path : step_checkpoints_newest_first(run_dir))
    if (auto in = open_checkpoint_or_skip(path)) return in;
  return nullptr;
}

std::optional<std::string> latest_valid_checkpoint(const std::string& run_dir) {
  if (auto in = open_latest_checkpoint(run_dir)) return in->path();
  return std::nullopt;
}

void prune_checkpoints(const std::string& run_dir, int keep) {
  auto all = step_checkpoints(run_dir);
  for (size_t i = 0; i + size_t(keep) < all.size(); ++i) fs::remove(all[i]);
}

}  // namespace undo
