#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cli/stages.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/owned_output.h"
#include "data/mcq.h"
#include "data/prepared_check.h"
#include "eval/evaluator.h"
#include "eval/mcq_scorer.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace undo {
namespace {

// A question file scored (eval/mcq_scorer.h): undo-data tokenizes it with
// data.dir's tokenizer into a private temporary file, removed after.
JsonObject evaluate_mcq(Transformer& model, const Config& cfg, const std::string& questions,
                        const std::string& details_path) {
  std::string tokens_path;
  ::close(create_exclusive("/tmp/undo-mcq-tokens.", &tokens_path));
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove{tokens_path};
  run_data_tool({"mcq", "--data.dir", cfg.data.dir, "--questions", questions, "--out", tokens_path});
  auto tokens = read_mcq_tokens(tokens_path, int(model->cfg.vocab_size));
  check_mcq_fits(tokens, model->cfg.seq_len, questions);
  auto lls = mcq_loglikelihoods(model, tokens, cfg.train.precision == "bf16", {}, /*progress=*/true);
  McqScore s = score_mcq(tokens, lls);
  if (!details_path.empty()) {
    std::string lines;
    for (size_t q = 0; q < tokens.size(); ++q) {
      std::string ll;
      for (double v : lls[q]) ll += (ll.empty() ? "" : ", ") + format_double(v);
      JsonObject o;
      o.add("line", tokens[q].line).add("answer", tokens[q].answer).add_raw("loglikelihoods", "[" + ll + "]");
      o.add("chosen", s.chosen[q]).add("chosen_norm", s.chosen_norm[q]);
      lines += o.str() + "\n";
    }
    write_output_file(details_path, lines);
  }
  JsonObject r;
  r.add("mcq", questions).add("questions", s.questions).add("acc", s.acc).add("acc_se", s.acc_se);
  r.add("acc_norm", s.acc_norm).add("acc_norm_se", s.acc_norm_se);
  return r;
}

}  // namespace

int stage_eval(int argc, const char* const* argv) {
  Config cfg;
  std::string model_path, mcq, mcq_details;
  if (!parse_config(argc, argv, "eval", cfg,
                    {{"model", "checkpoint to evaluate", &model_path, true, true},
                     {"mcq", "score these multiple-choice questions instead (JSONL: question, choices, answer)", &mcq,
                      false, true},
                     {"mcq-details", "with --mcq: each question's choice log-likelihoods, as JSONL", &mcq_details,
                      false}}))
    return 0;
  configure_threads(cfg.run);
  select_compute_device(cfg.run.device, 0);
  CheckpointMeta meta;
  Transformer model = load_model(model_path, &meta);
  check_prepared_data(cfg.data.dir);
  check_model_fits_data(meta, model_path, cfg.data.dir);
  model->to(compute_device());
  cfg.model = meta.model;  // windows and vocab follow the checkpoint
  JsonObject result;
  result.add("model", model_path).add("stage", meta.stage).add("step", meta.step);
  if (!mcq.empty()) {
    result.merge(evaluate_mcq(model, cfg, mcq, mcq_details));
  } else {
    UNDO_INPUT_CHECK(mcq_details.empty(), "--mcq-details needs --mcq");
    Evaluator evaluator(cfg);
    evaluator.show_progress();
    result.merge(evaluator.run(model));
  }
  // The result goes to stdout; to RUN_DIR/eval.json only where the command
  // names a run directory (it used to land in the config's runs/tiny of the
  // current directory: an evaluation has no run of its own).
  if (auto it = cfg.origin.find("run.dir"); it != cfg.origin.end() && it->second == "command line") write_output_file(join_path(cfg.run.dir, "eval.json"), result.str() + "\n");
  std::cout << result.str() << "\n";
  return 0;
}

}  // namespace undo
