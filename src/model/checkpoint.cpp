#include "model/checkpoint.h"

#include <cstring>
#include <filesystem>
#include <limits>
#include <iostream>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/sha256.h"

namespace fs = std::filesystem;

namespace undo {
namespace {

constexpr char kMagic[8] = {'U', 'N', 'D', 'O', 'C', 'K', 'P', 'T'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 8 + 4 + 4 + 8 + 32;

std::string meta_text(const CheckpointMeta& m) {
  std::ostringstream os;
  const auto& c = m.model;
  os << "stage=" << m.stage << "\nstep=" << m.step << "\nvocab_size=" << c.vocab_size << "\nd_model=" << c.d_model
     << "\nn_layers=" << c.n_layers << "\nn_heads=" << c.n_heads << "\nd_ff=" << c.d_ff << "\nseq_len=" << c.seq_len
     << "\nsoftcap=" << format_double(c.softcap) << "\nrope_theta=" << format_double(c.rope_theta)
     << "\nnorm_eps=" << format_double(c.norm_eps) << "\ngelu=" << c.gelu
     << "\nlibtorch=" << (m.libtorch.empty() ? std::string(TORCH_VERSION) : m.libtorch) << "\n";
  for (auto& [k, v] : m.extra) os << "x." << k << "=" << v << "\n";
  return os.str();
}

CheckpointMeta parse_meta(const std::string& text, const std::string& path) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  auto get = [&](const char* k) {
    auto it = kv.find(k);
    UNDO_CHECK(it != kv.end(), "checkpoint '", path, "' lacks meta key ", k);
    return it->second;
  };
  // Every number is parsed whole and range-checked before anything is sized
  // by it: a crafted file with a valid checksum must not divide by zero.
  // Errors of the shared number parsers, with the file named.
  auto in_file = [&](auto parse) {
    try {
      return parse();
    } catch (const InputError& e) {
      throw InputError("checkpoint '" + path + "': " + e.what());
    }
  };
  auto integer = [&](const char* k, int64_t lo, int64_t hi) {
    return in_file([&] { return parse_integer("meta key " + std::string(k), get(k), lo, hi); });
  };
  auto real = [&](const char* k) {
    return in_file([&] { return parse_real("meta key " + std::string(k), get(k), std::numeric_limits<double>::lowest()); });
  };
  CheckpointMeta m;
  m.stage = get("stage");
  m.step = integer("step", 0, std::numeric_limits<int64_t>::max());
  const int64_t kMax = std::numeric_limits<int>::max();
  m.model.vocab_size = int(integer("vocab_size", 0, kMax));
  m.model.d_model = int(integer("d_model", 0, kMax));
  m.model.n_layers = int(integer("n_layers", 0, kMax));
  m.model.n_heads = int(integer("n_heads", 0, kMax));
  m.model.d_ff = int(integer("d_ff", 0, kMax));
  m.model.seq_len = int(integer("seq_len", 0, kMax));
  m.model.softcap = real("softcap");
  m.model.rope_theta = real("rope_theta");
  m.model.norm_eps = real("norm_eps");
  m.model.gelu = get("gelu");
  auto problem = model_config_problem(m.model);
  UNDO_INPUT_CHECK(problem.empty(), "checkpoint '", path, "' describes an impossible model: ", problem);
  if (kv.count("libtorch")) m.libtorch = kv["libtorch"];
  for (auto& [k, v] : kv)
    if (k.rfind("x.", 0) == 0) m.extra[k.substr(2)] = v;
  return m;
}

// Reads and verifies a whole checkpoint file; returns meta text and payload.
std::pair<std::string, std::string> read_verified(const std::string& path) {
  std::string file = read_file(path);
  UNDO_CHECK(file.size() >= kHeader, "checkpoint '", path, "' is truncated (", file.size(), " bytes)");
  UNDO_CHECK(std::memcmp(file.data(), kMagic, 8) == 0, "'", path, "' is not an undo checkpoint (bad magic)");
  uint32_t version, meta_bytes;
  uint64_t payload_bytes;
  std::memcpy(&version, file.data() + 8, 4);
  std::memcpy(&meta_bytes, file.data() + 12, 4);
  std::memcpy(&payload_bytes, file.data() + 16, 8);
  UNDO_CHECK(version == kVersion, "checkpoint '", path, "' has format version ", version, ", expected ", kVersion);
  UNDO_CHECK(file.size() == kHeader + meta_bytes + payload_bytes, "checkpoint '", path, "' is truncated: ",
             file.size(), " bytes, header says ", kHeader + meta_bytes + payload_bytes);
  auto digest = sha256_hex(file.data() + kHeader, meta_bytes + payload_bytes);
  UNDO_CHECK(digest == to_hex(reinterpret_cast<const uint8_t*>(file.data()) + 24, 32), "checkpoint '", path,
             "' fails its checksum: the file is corrupted");
  return {file.substr(kHeader, meta_bytes), file.substr(kHeader + meta_bytes)};
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointMeta& meta, Transformer& model,
                     AdamW* optimizer) {
  write_checkpoint_bytes(path, checkpoint_bytes(meta, model, optimizer));
}

void write_checkpoint_bytes(const std::string& path, const std::string& bytes) {
  auto dir = fs::path(path).parent_path();
  if (!dir.empty()) make_dirs(dir.string());
  write_file_atomic(path, bytes);
}

std::string checkpoint_bytes(const CheckpointMeta& meta, Transformer& model, AdamW* optimizer) {
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
  std::string payload = payload_stream.str();
  std::string meta_str = meta_text(meta);

  std::string header(kHeader, '\0');
  std::memcpy(&header[0], kMagic, 8);
  uint32_t meta_bytes = uint32_t(meta_str.size());
  uint64_t payload_bytes = payload.size();
  std::memcpy(&header[8], &kVersion, 4);
  std::memcpy(&header[12], &meta_bytes, 4);
  std::memcpy(&header[16], &payload_bytes, 8);
  Sha256 h;
  h.update(meta_str);
  h.update(payload);
  auto d = h.digest();
  std::memcpy(&header[24], d.data(), 32);
  return header + meta_str + payload;
}

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  return parse_meta(read_verified(path).first, path);
}

namespace {
// Loads a verified payload into `model` (and `optimizer`); the file is read once by the caller.
void load_payload(const std::string& path, const CheckpointMeta& meta, const std::string& payload,
                  Transformer& model, AdamW* optimizer) {
  const auto& a = meta.model;
  const auto& b = model->cfg;
  UNDO_INPUT_CHECK(a.vocab_size == b.vocab_size && a.d_model == b.d_model && a.n_layers == b.n_layers &&
                       a.n_heads == b.n_heads && a.d_ff == b.d_ff && a.gelu == b.gelu,
                   "checkpoint '", path, "' holds a model of another shape (d_model ", a.d_model, ", layers ",
                   a.n_layers, ", vocab ", a.vocab_size, ") than configured (d_model ", b.d_model, ", layers ",
                   b.n_layers, ", vocab ", b.vocab_size, ")");
  std::istringstream in(payload);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(in);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw InputError("checkpoint '" + path + "' was written by LibTorch " +
                     (meta.libtorch.empty() ? std::string("(unrecorded, before 2.x)") : meta.libtorch) +
                     " and this build's LibTorch " + TORCH_VERSION + " cannot read its payload: " +
                     what.substr(0, what.find('\n')));
  }
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

CheckpointMeta load_checkpoint(const std::string& path, Transformer& model, AdamW* optimizer) {
  auto [meta_str, payload] = read_verified(path);
  CheckpointMeta meta = parse_meta(meta_str, path);
  load_payload(path, meta, payload, model, optimizer);
  return meta;
}

Transformer load_model(const std::string& path, CheckpointMeta* meta_out) {
  auto [meta_str, payload] = read_verified(path);
  CheckpointMeta meta = parse_meta(meta_str, path);
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
