#include "train/run_dir.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <memory>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "core/json_value.h"
#include "core/sha256.h"
#include "data/prepared_check.h"
#include "distributed/communicator.h"

namespace undo {

namespace {

bool excluded(const std::string& key) {
  static const std::vector<std::string> prefixes = {"run.dir", "run.resume", "run.threads", "run.device", "dist.",
                                                    "eval.", "data.dir", "distill.cache_dir", "train.steps",
                                                    "train.log_every", "train.eval_every", "train.ckpt_every",
                                                    "train.keep_ckpts", "train.batch_size", "train.accum"};
  for (auto& p : prefixes)
    if (key.rfind(p, 0) == 0) return true;
  return false;
}

// The locks of the run directories this process has claimed, released at exit.
std::vector<std::unique_ptr<FileLock>>& held_locks() {
  static std::vector<std::unique_ptr<FileLock>> locks;
  return locks;
}

bool has_step_checkpoints(const std::string& run_dir) {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(join_path(run_dir, "ckpt"), ec)) {
    auto name = e.path().filename().string();
    if (name.rfind("step_", 0) == 0) return true;
  }
  return false;
}

// The run directory records the sha256 of each input file (inputs.json) the
// first time, and every later run there, resumed or not, must have the same:
// a relearn rerun skips finished attacks and a resumed run continues its
// state, both silently wrong on another model. Refused naming the input.
void check_recorded_inputs(const Config& cfg) {
  if (cfg.inputs.empty()) return;
  const std::string path = join_path(cfg.run.dir, "inputs.json");
  std::map<std::string, std::string> now;
  for (auto& [name, file] : cfg.inputs) now[name] = sha256_file(file);
  if (file_exists(path)) {
    auto recorded = parse_json(read_file(path), path);
    for (auto& [name, sha] : now) {
      const JsonValue* was = recorded.find(name);
      UNDO_INPUT_CHECK(!was || !was->is_object() || !was->find("sha256") || was->at("sha256").string() == sha,
                       "run.dir '", cfg.run.dir, "' was made from another ", name, ": sha256 ",
                       was && was->is_object() && was->find("sha256") ? was->at("sha256").string() : "", " (", path,
                       "), but --", name, " '", cfg.inputs.at(name), "' has ", sha,
                       " (nothing was changed; use a new run.dir for another input)");
    }
  }
  JsonObject o;
  for (auto& [name, sha] : now) o.add(name, JsonObject().add("file", cfg.inputs.at(name)).add("sha256", sha));
  write_file_atomic(path, o.str() + "\n");
}

// The run directories this process created, for remove_abandoned_run_dirs.
std::vector<std::string>& created_run_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

// What claiming and preparing a run writes before any work: a directory that
// holds nothing else was only started.
constexpr std::array<const char*, 4> kStartUpFiles = {".lock", "config.ini", "inputs.json", "version.json"};

bool only_start_up_files(const std::string& dir) {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (std::find(kStartUpFiles.begin(), kStartUpFiles.end(), name) == kStartUpFiles.end()) return false;
  }
  return !ec;
}

// Rank 0's part of claim_run_dir: returns when the run may go on, else throws why not.
void check_run_dir(Config& cfg, int world) {
  if (!std::filesystem::exists(cfg.run.dir)) created_run_dirs().push_back(cfg.run.dir);
  make_dirs(cfg.run.dir);
  held_locks().push_back(std::make_unique<FileLock>(join_path(cfg.run.dir, ".lock"), /*wait=*/false,
                                                    "another undo process"));
  check_recorded_inputs(cfg);
  if (!cfg.run.resume) {
    UNDO_INPUT_CHECK(!has_step_checkpoints(cfg.run.dir), "run.dir '", cfg.run.dir,
                     "' already holds another run's checkpoints (", join_path(cfg.run.dir, "ckpt"),
                     "): --resume continues that run; a new run needs a new run.dir (nothing was changed)");
    return;
  }
  // Only the newest checkpoint's head is read here (its tensors' bytes are
  // verified once, when the Trainer loads them).
  auto latest = open_latest_checkpoint(cfg.run.dir);
  if (!latest) return;
  auto diff = identity_mismatch(latest->meta(), run_identity(cfg, world));
  UNDO_INPUT_CHECK(diff.empty(), "--resume: checkpoint '", latest->path(), "' belongs to another run: ", diff,
                   " (nothing was changed; resume with that run's settings, or start in a new run.dir)");
}

}  // namespace

void remove_abandoned_run_dirs() {
  for (auto& dir : created_run_dirs()) {
    if (!only_start_up_files(dir)) continue;  // work was done there: it stays
    std::error_code ec;
    for (const char* f : kStartUpFiles) std::filesystem::remove(join_path(dir, f), ec);
    std::filesystem::remove(dir, ec);  // only when empty
  }
  created_run_dirs().clear();
}

std::map<std::string, std::string> run_identity(Config& cfg, int world) {
  std::map<std::string, std::string> id;
  for (auto& k : describe(cfg))
    if (!excluded(k.name)) id[k.name] = k.value();
  id["train.global_batch"] = std::to_string(int64_t(cfg.train.batch_size) * cfg.train.accum * world);
  auto manifest = join_path(cfg.data.dir, "manifest.json");
  id["data.manifest_sha256"] = file_exists(manifest) ? sha256_file(manifest) : "none";
  // The manifest's record of the tokenizer (tokenizer.model or a model's
  // tokenizer.json), which prepare_run has checked against the file.
  const std::string tokenizer = prepared_tokenizer_sha256(cfg.data.dir);
  id["data.tokenizer_sha256"] = tokenizer.empty() ? "none" : tokenizer;
  return id;  // the stage's input files are checked by check_recorded_inputs
}

void stamp_identity(CheckpointMeta& meta, const std::map<std::string, std::string>& identity) {
  for (auto& [k, v] : identity) meta.extra["id." + k] = v;
}

std::string identity_mismatch(const CheckpointMeta& meta, const std::map<std::string, std::string>& identity) {
  std::ostringstream os;
  for (auto& [k, v] : identity) {
    auto it = meta.extra.find("id." + k);
    if (it == meta.extra.end()) continue;  // a key this checkpoint's build did not know
    if (it->second != v) os << (os.tellp() > 0 ? ", " : "") << k << " " << it->second << " (this run: " << v << ")";
  }
  return os.str();
}

void claim_run_dir(Config& cfg) {
  auto comm = distributed();
  const int world = comm ? comm->world() : 1;
  if (!comm) return check_run_dir(cfg, world);
  // Rank 0 decides; the others wait for its verdict instead of a collective
  // that would never come.
  int64_t ok = 1;
  std::string why;
  if (comm->rank() == 0) {
    try {
      check_run_dir(cfg, world);
    } catch (const std::exception& e) {
      ok = 0;
      why = e.what();
    }
  }
  auto verdict = torch::tensor({ok}, torch::kLong);
  comm->broadcast({verdict}, 0);
  if (comm->rank() == 0 && !ok) throw InputError(why);
  UNDO_INPUT_CHECK(verdict.item<int64_t>() == 1, "run.dir '", cfg.run.dir, "' was refused by rank 0 (its error says why)");
}

}  // namespace undo
