// Logit-cache formats compared on held-out positions: for each format, the
// bytes a position takes, and how far its KL(teacher || student) estimate and
// gradient are from the full-vocabulary ones, over `replicates` independent
// sets of draws. The positions are windows of the validation split (no cache
// is built over them), the targets pass through the file's precision
// (cache_rows_of, then targets_of), and the estimate is the training loss
// itself (cached_forward_kl). Prints one JSON line per format.
//   build/undo_cache_bench --teacher T.ckpt --student S.ckpt --formats s12:q8,top32+s32:f16 [--windows 64]
//       [--replicates 8] [--data.dir DIR --data.base_mix MIX ...]
// With --read CACHE it times reading that cache instead (rows/s through
// targets_of, and a full verify), as a student and a reuse do.
#include <chrono>
#include <functional>
#include <iostream>

#include "cache/logit_cache.h"
#include "core/config.h"
#include "core/error.h"
#include "core/json.h"
#include "data/stream.h"
#include "model/device.h"
#include "sweep/spec.h"
#include "train/checkpoint.h"
#include "train/objectives/distill.h"
#include "train/stage_models.h"
#include "train/teacher_targets.h"

using namespace undo;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

void time_reading(const std::string& path) {
  LogitCacheReader cache(path);
  const uint64_t block = 16;
  auto start = std::chrono::steady_clock::now();
  for (uint64_t at = 0; at < cache.rows(); at += block) {
    torch::Tensor tokens;
    targets_of(cache.read(at, std::min(block, cache.rows() - at)), cache.key(), &tokens);
  }
  const double read_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  cache.verify();
  const double verify_s = seconds_since(start);
  const double positions = double(cache.rows()) * cache.key().window;
  JsonObject o;
  o.add("cache", path).add("format", cache.key().format_name()).add("positions", positions)
      .add("read_positions_per_s", positions / read_s).add("verify_positions_per_s", positions / verify_s);
  std::cout << o.str() << "\n";
}

// The student's parameter gradient of `loss_of(student logits)`, flattened: what a step follows.
torch::Tensor parameter_gradient(Transformer& student, const torch::Tensor& inputs,
                                 const std::function<torch::Tensor(const torch::Tensor&)>& loss_of) {
  student->zero_grad();
  loss_of(student->forward(inputs).to(torch::kFloat)).backward();
  std::vector<torch::Tensor> g;
  for (auto& p : student->parameters())
    if (p.grad().defined()) g.push_back(p.grad().flatten().clone());
  return torch::cat(g);
}

// Per window: the estimate's error against the full KL, over replicates, and
// the relative L2 error of the student's parameter gradient on all windows
// (one batch of them) against the full KL's.
void compare(const DistillSignal& f, const std::string& dtype, const torch::Tensor& teacher_logits,
             const torch::Tensor& student_logits, Transformer& student, const torch::Tensor& inputs, int replicates,
             int window, int vocab) {
  LogitCacheKey key;
  key.k = std::min(f.k, vocab), key.samples = f.samples, key.dtype = f.dtype.empty() ? dtype : f.dtype;
  key.vocab = vocab, key.window = window;
  const int64_t W = teacher_logits.size(0);
  auto full = torch::zeros({W}, torch::kDouble);
  for (int64_t w = 0; w < W; ++w) full[w] = forward_kl(teacher_logits[w], student_logits[w]).item<double>();
  const auto full_grad =
      parameter_gradient(student, inputs, [&](const torch::Tensor& q) { return forward_kl(teacher_logits, q); });
  double err_sum = 0, err_sq = 0, grad_err = 0;
  const torch::Tensor tokens = torch::zeros({W, window}, torch::kLong);
  for (int r = 0; r < replicates; ++r) {
    auto t = teacher_targets(teacher_logits, key.k, key.samples, uint64_t(1000 + r));
    t = targets_of(cache_rows_of(t, tokens, key), key, nullptr);  // the file's precision
    for (int64_t w = 0; w < W; ++w) {
      TeacherTargets one;
      auto row = [&](const torch::Tensor& v) { return v.defined() ? v[w] : v; };
      one.ids = row(t.ids), one.logp = row(t.logp), one.rest_logp = row(t.rest_logp);
      one.tail_ids = row(t.tail_ids), one.tail_logp = row(t.tail_logp);
      const double e = cached_forward_kl(one, student_logits[w]).item<double>() - full[w].item<double>();
      err_sum += e, err_sq += e * e;
    }
    auto g = parameter_gradient(student, inputs, [&](const torch::Tensor& q) { return cached_forward_kl(t, q); });
    grad_err += ((g - full_grad).norm() / full_grad.norm()).item<double>();
  }
  const double n = double(W) * replicates, bias = err_sum / n, sd = std::sqrt(std::max(0.0, err_sq / n - bias * bias));
  const double kl = full.mean().item<double>();
  JsonObject o;
  o.add("format", f.name).add("bytes_per_position", logit_cache_bytes_per_position(key)).add("full_kl", kl)
      .add("bias", bias).add("bias_se", sd / std::sqrt(n)).add("relative_bias", bias / kl)
      .add("window_sd", sd).add("relative_window_sd", sd / kl).add("param_gradient_relative_error", grad_err / replicates)
      .add("windows", W).add("replicates", replicates);
  std::cout << o.str() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Config cfg;
    std::string teacher_path, student_path, formats = "top32+s32:f16,s12:q8", windows_text = "64",
                                            replicates_text = "8", read;
    if (!parse_config(argc, argv, "cache-bench", cfg,
                      {{"teacher", "teacher checkpoint", &teacher_path, false, true},
                       {"student", "student checkpoint (the KL is the teacher's against it)", &student_path, false, true},
                       {"formats", "formats compared, comma-separated", &formats},
                       {"windows", "held-out windows (validation split)", &windows_text},
                       {"replicates", "independent sets of draws", &replicates_text},
                       {"read", "time reading this cache instead", &read, false, true}}))
      return 0;
    torch::set_num_threads(std::max(1, cfg.run.threads));
    if (!read.empty()) {
      time_reading(read);
      return 0;
    }
    UNDO_INPUT_CHECK(!teacher_path.empty() && !student_path.empty(), "--teacher and --student are needed");
    CheckpointReader teacher_file(teacher_path), student_file(student_path);
    cfg.model = teacher_file.meta().model;
    auto parallel = make_parallelism(cfg);
    Transformer teacher = load_model_for_run(cfg, *parallel, teacher_file, true);
    Transformer student = load_model_for_run(cfg, *parallel, student_file, /*frozen=*/false);
    teacher->eval(), student->eval();
    const int64_t W = parse_integer("--windows", windows_text, 1, 1 << 16);
    const int replicates = int(parse_integer("--replicates", replicates_text, 1, 1000));
    StreamMix val(cfg.data.dir, parse_mix("data.base_mix", cfg.data.base_mix), "val", cfg.model.seq_len);
    std::vector<int64_t> buf(size_t(W) * size_t(cfg.model.seq_len + 1));
    for (int64_t i = 0; i < W; ++i) val.sequence(7, uint64_t(i), &buf[size_t(i) * size_t(cfg.model.seq_len + 1)]);
    auto inputs = torch::from_blob(buf.data(), {W, cfg.model.seq_len + 1}, torch::kLong)
                      .narrow(1, 0, cfg.model.seq_len)
                      .clone();
    torch::Tensor t_logits, s_logits;
    {
      torch::NoGradGuard no_grad;
      t_logits = teacher->forward(inputs).to(torch::kFloat);
      s_logits = student->forward(inputs).to(torch::kFloat);
    }
    for (auto& name : split_list(formats)) {
      auto signal = parse_distill_signal("--formats", name);  // the sweep's signal names
      UNDO_INPUT_CHECK(!signal.online, "--formats: online is no cache format");
      compare(signal, cfg.distill.cache_dtype, t_logits, s_logits, student, inputs, replicates, cfg.model.seq_len, int(t_logits.size(-1)));
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "undo_cache_bench: " << e.what() << "\n";
    return 2;
  }
}
