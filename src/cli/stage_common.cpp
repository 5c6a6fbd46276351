#include <filesystem>
#include <iostream>

#include "cli/stage_result.h"
#include "cli/stages.h"
#include "core/code_version.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "data/prepared_check.h"
#include "data/vocabulary.h"
#include "distributed/communicator.h"
#include "distributed/launch.h"
#include "model/device.h"
#include "train/run_dir.h"
#include "train/trainer.h"

namespace undo {

bool is_writer() {
  auto comm = distributed();
  return !comm || comm->rank() == 0;
}

void write_stage_result(const Config& cfg, const std::string& stage, Transformer& model, const TrainResult& r,
                        double wall_s, const std::map<std::string, std::string>& extra,
                        const CheckpointMeta* trained_from) {
  const std::string summary_path = join_path(cfg.run.dir, "summary.json");
  CheckpointMeta meta;
  meta.model = model->cfg;
  meta.step = r.steps_done;
  meta.stage = stage;
  meta.extra = extra;
  meta.extra["tokens"] = std::to_string(r.tokens);
  if (trained_from) carry_origin(*trained_from, meta);
  // The tokenizer its ids mean text in: checked by every later stage that
  // reads this model with data (check_model_fits_data).
  // And where that tokenizer is, so that an export without --data.dir still ships it.
  if (auto tokenizer = prepared_tokenizer_sha256(cfg.data.dir); !tokenizer.empty()) {
    meta.extra["tokenizer_sha256"] = tokenizer;
    meta.extra["data_dir"] = std::filesystem::absolute(cfg.data.dir).lexically_normal().string();
  }
  save_checkpoint(is_writer() ? join_path(cfg.run.dir, "model.ckpt") : "", meta, model, nullptr);  // collective
  if (!is_writer()) return;
  // --resume of a finished run: nothing was trained or evaluated here, and the
  // run's own result stands (it used to be rewritten with an empty "eval").
  if (r.losses.empty() && r.final_eval.empty() && file_exists(summary_path)) {
    std::cerr << stage << ": " << cfg.run.dir << " was finished; its summary.json is kept\n";
    return;
  }
  JsonObject summary, ev;
  summary.add("stage", stage);
  for (auto& [k, v] : extra) summary.add_text_or_number(k, v);  // alpha 0.5, not "0.5"
  summary.add("steps", r.steps_done).add("tokens", r.tokens).add("wall_s", wall_s).add("params", model->num_params());
  summary.add("skipped_steps", r.skipped_steps);  // non-finite loss or gradient: not applied
  if (r.state_bytes > 0) summary.add("state_bytes_per_rank", r.state_bytes);  // rank 0's: parameters, shards, gradients, moments
  for (auto& [k, v] : r.final_eval) ev.add(k, v);
  summary.add("eval", ev);
  write_file_atomic(summary_path, summary.str() + "\n");
  std::cout << summary.str() << "\n";
}

std::string version_text() {
  const std::string cuda = cuda_runtime_version();
  return "undo " + code_version_text() + "\nLibTorch " + libtorch_version() + ", CUDA " +
         (cuda.empty() ? "none (this LibTorch is built for the CPU)" : cuda) + "\n";
}

std::string version_record() {
  JsonObject v;
  v.add("commit", kGitCommit).add("dirty", kGitDirty).add("libtorch", libtorch_version())
      .add("cuda", cuda_runtime_version());
  return v.str() + "\n";
}

void require_run_dir(const Config& cfg) {
  UNDO_INPUT_CHECK(!cfg.run.dir.empty(), "run.dir is not set: give --run-dir DIR, or [run] dir in the config "
                   "(nothing is written in the current directory unless a path says so)");
}

void prepare_run(Config& cfg) {
  require_run_dir(cfg);
  auto vocab_path = join_path(cfg.data.dir, "vocab.bin");
  // The tokenizer and decoding table must be the ones the data was prepared
  // with (shards verify themselves when opened).
  check_prepared_data(cfg.data.dir);
  int tok_vocab = Vocabulary(vocab_path).size();
  if (cfg.model.vocab_size == 0) cfg.model.vocab_size = tok_vocab;
  UNDO_INPUT_CHECK(cfg.model.vocab_size >= tok_vocab, "model.vocab_size = ", cfg.model.vocab_size,
                   " is smaller than the tokenizer's ", tok_vocab, " in '", vocab_path, "'");
  // The device first: dist.backend = auto picks NCCL for ranks that compute on GPUs.
  select_compute_device(cfg.run.device, detect_launch().local_rank);
#ifndef UNDO_WITH_NCCL
  UNDO_INPUT_CHECK(cfg.dist.backend != "nccl", "dist.backend = nccl: this build's LibTorch has no CUDA, hence no "
                   "NCCL (use gloo or auto, or build against a LibTorch with CUDA: docs/ARCHITECTURE.md)");
#endif
  UNDO_INPUT_CHECK(cfg.dist.backend != "nccl" || computing_on_cuda(), "dist.backend = nccl reduces on GPUs, but run.device = ",
                   cfg.run.device, " (use dist.backend = gloo or auto for ranks that compute on the CPU)");
  auto comm = init_distributed(cfg.dist);
  claim_run_dir(cfg);  // locked, and no other run's checkpoints: before anything is written there
  if (!comm || comm->rank() == 0) {
    write_file_atomic(join_path(cfg.run.dir, "config.ini"), to_ini(cfg));
    write_file_atomic(join_path(cfg.run.dir, "version.json"), version_record());
  }
  configure_threads(cfg.run, comm ? comm->local_world() : 1);
}

}  // namespace undo
