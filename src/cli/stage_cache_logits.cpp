#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json.h"
#include "distributed/communicator.h"
#include "train/cache_build.h"
#include "train/checkpoint.h"
#include "train/stage_models.h"
#include "train/teacher_cache.h"

namespace undo {

// `undo cache-logits`: one teacher pass over the distillation stream into the
// HDF5 cache that `undo distill` (distill.cache = auto | require) reads.
int stage_cache_logits(int argc, const char* const* argv) {
  Config cfg;
  std::string teacher_path, mix, tokens_text, out, forward_only;
  if (!parse_config(argc, argv, "cache-logits", cfg,
                    {{"teacher", "checkpoint of the teacher", &teacher_path, true, true},
                     {"data", "stream mix to run it over (default data.base_mix, what distill reads)", &mix},
                     {"tokens", "positions to cache (rounded up to whole windows)", &tokens_text, true},
                     {"out", "cache file (default: distill.cache_dir, named by its key)", &out},
                     {"forward-only", "1: run the teacher over the same rows and write nothing (the baseline "
                      "bench/logit-cache compares a build's throughput with)", &forward_only}}))
    return 0;
  // A cache build's run directory holds its config, summary and (by default)
  // the cache: it is named on the command line, never taken from the config
  // file's run.dir, which wrote runs/tiny/ into whatever directory it ran in.
  auto given = cfg.origin.find("run.dir");
  UNDO_INPUT_CHECK(given != cfg.origin.end() && given->second == "command line",
                   "cache-logits needs --run-dir DIR (its config, summary and, without --out or distill.cache_dir, "
                   "its cache go there); the config's run.dir = '", cfg.run.dir, "' is not used for it");
  const int64_t tokens = parse_integer("--tokens", tokens_text, 1);
  if (mix.empty()) mix = cfg.data.base_mix;
  parse_mix("--data", mix);
  CheckpointReader teacher_file(teacher_path);  // verified once, read from below
  const CheckpointMeta& meta = teacher_file.meta();
  cfg.model = meta.model;
  prepare_run(cfg);
  // dist.zero = 3: the teacher is sharded as it is read (each rank reads its
  // slices of the file) and runs forward gathered unit by unit: never whole.
  Transformer teacher = load_model_for_run(cfg, *make_parallelism(cfg), teacher_file, /*frozen=*/true);
  UNDO_INPUT_CHECK(cfg.model.vocab_size == meta.model.vocab_size, "the teacher's vocabulary (", meta.model.vocab_size,
                   ") does not match the tokenizer of data.dir");
  uint64_t rows = uint64_t((tokens + cfg.model.seq_len - 1) / cfg.model.seq_len);
  auto key = teacher_cache_key(cfg, teacher_path, mix, cfg.model.vocab_size);
  if (forward_only == "1") {
    UNDO_INPUT_CHECK(!distributed(), "--forward-only runs in one process (a benchmark's baseline)");
    const uint64_t batches = (rows + uint64_t(cfg.train.batch_size) - 1) / uint64_t(cfg.train.batch_size);
    JsonObject o;
    o.add("stage", "cache-logits").add("forward_only", true).add("rows", int64_t(rows));
    build_cache_part(cfg, key, teacher, 0, rows, "", batches).add_to(o);
    write_file_atomic(join_path(cfg.run.dir, "summary.json"), o.str() + "\n");
    std::cout << o.str() << "\n";
    return 0;
  }
  UNDO_INPUT_CHECK(forward_only.empty() || forward_only == "0", "--forward-only '", forward_only, "' (0 | 1)");
  auto cache = ensure_teacher_cache(cfg, key, rows, teacher, "auto", out);
  if (!is_writer()) return 0;
  JsonObject o;
  o.add("stage", "cache-logits").add("cache", cache.path).add("built", cache.built).add("rows", int64_t(rows))
      .add("format", key.format_name()).add("bytes_per_position", logit_cache_bytes_per_position(key))
      .add("key_sha256", key.digest()).add("teacher_tokens", cache.teacher_tokens);
  if (cache.built) cache.times.add_to(o);  // rank 0's phases: every rank builds an equal share
  write_file_atomic(join_path(cfg.run.dir, "summary.json"), o.str() + "\n");
  std::cout << o.str() << "\n";
  return 0;
}

}  // namespace undo
