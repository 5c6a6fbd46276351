#include "core/config.h"

#include <boost/program_options.hpp>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/spelling.h"
#include "core/stage_settings.h"
#include "core/unlearning_methods.h"

namespace po = boost::program_options;

namespace undo {

std::string format_double(double v) {
  char buf[64];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

namespace {

std::string to_text(const std::string& v) { return v; }
std::string to_text(double v) { return format_double(v); }
std::string to_text(bool v) { return v ? "true" : "false"; }
template <typename T>
std::string to_text(T v) { return std::to_string(v); }

// Collects keys into a Boost options description and our own registry.
class Registry {
 public:
  explicit Registry(po::options_description* desc) : desc_(desc) {}

  template <typename T>
  Registry& add(const char* name, T* field, const char* help,
                std::function<std::string(const T&)> check = {}) {
    if (desc_) desc_->add_options()(name, po::value<T>(field)->default_value(*field, to_text(*field)), help);
    ConfigKey k;
    k.name = name;
    k.help = help;
    k.value = [field] { return to_text(*field); };
    if (check) k.validate = [field, check] { return check(*field); };
    keys.push_back(std::move(k));
    return *this;
  }
  std::vector<ConfigKey> keys;

 private:
  po::options_description* desc_;
};

// A comma-separated list of numbers, each in [lo, hi].
std::function<std::string(const std::string&)> number_list(double lo, double hi) {
  return [lo, hi](const std::string& v) -> std::string {
    try {
      auto xs = parse_number_list("", v);
      for (double x : xs)
        if (x < lo || x > hi) return "each value must be in [" + format_double(lo) + ", " + format_double(hi) + "]";
      return "";
    } catch (const InputError&) {
      return "expected comma-separated numbers";
    }
  };
}

template <typename T>
std::function<std::string(const T&)> at_least(T lo) {
  return [lo](const T& v) { return v >= lo ? "" : "must be >= " + to_text(lo); };
}
template <typename T>
std::function<std::string(const T&)> in_range(T lo, T hi) {
  return [lo, hi](const T& v) {
    return (v >= lo && v <= hi) ? "" : "must be in [" + to_text(lo) + ", " + to_text(hi) + "]";
  };
}
std::function<std::string(const std::string&)> one_of(std::set<std::string> allowed) {
  return [allowed](const std::string& v) {
    if (allowed.count(v)) return std::string();
    std::string s = "must be one of:";
    for (auto& a : allowed) s += " " + a;
    return s;
  };
}
std::function<std::string(const std::string&)> non_empty() {
  return [](const std::string& v) { return v.empty() ? std::string("must not be empty") : std::string(); };
}
std::function<std::string(const std::string&)> valid_mix(const char* key) {
  return [key](const std::string& v) {
    try {
      parse_mix(key, v);
      return std::string();
    } catch (const InputError& e) {
      return std::string(e.what());
    }
  };
}

void describe_into(Config& c, Registry& r) {
  r.add("run.dir", &c.run.dir, "run directory (metrics, checkpoints, config.ini); no default: --run-dir DIR or [run] dir")
      .add("run.seed", &c.run.seed, "seed for init, data order and sampling")
      .add("run.threads", &c.run.threads, "intra-op threads per rank (0 = cores per rank)", in_range(0, 1024))
      .add("run.device", &c.run.device, "where models train: cpu | cuda (rank r takes GPU r % GPUs per node)",
           one_of({"cpu", "cuda"}))
      .add("run.resume", &c.run.resume, "resume from the latest valid checkpoint in run.dir");
  r.add("model.vocab_size", &c.model.vocab_size, "vocabulary size (0 = the tokenizer's)", in_range(0, 1 << 24))
      .add("model.d_model", &c.model.d_model, "residual width", in_range(1, 1 << 16))
      .add("model.n_layers", &c.model.n_layers, "transformer blocks", in_range(1, 4096))
      .add("model.n_heads", &c.model.n_heads, "attention (query) heads", in_range(1, 4096))
      .add("model.n_kv_heads", &c.model.n_kv_heads,
           "key/value heads, dividing n_heads (grouped-query attention; 0 = n_heads)", in_range(0, 4096))
      .add("model.head_dim", &c.model.head_dim, "width of a head, even (0 = d_model / n_heads)", in_range(0, 1 << 16))
      .add("model.d_ff", &c.model.d_ff, "gated MLP hidden width", in_range(1, 1 << 20))
      .add("model.seq_len", &c.model.seq_len, "tokens per training window", in_range(2, 1 << 20))
      .add("model.softcap", &c.model.softcap, "logit soft-cap (0 = off)", in_range(0.0, 1e6))
      .add("model.attn_softcap", &c.model.attn_softcap, "attention score soft-cap (Gemma-2; 0 = off)",
           in_range(0.0, 1e6))
      .add("model.query_scale", &c.model.query_scale,
           "scores scaled by its -1/2 power (Gemma-2's query_pre_attn_scalar; 0 = head_dim)", in_range(0.0, 1e9))
      .add("model.rope_theta", &c.model.rope_theta, "rotary base", in_range(1.0, 1e12))
      .add("model.rope_scaling", &c.model.rope_scaling,
           "rotary scaling: none | linear:FACTOR | llama3:FACTOR:LOW:HIGH:ORIGINAL_POSITIONS",
           std::function<std::string(const std::string&)>([](const std::string& v) {
             try {
               parse_rope_scaling(v);
               return std::string();
             } catch (const InputError& e) {
               return std::string(e.what());
             }
           }))
      .add("model.norm_eps", &c.model.norm_eps, "RMSNorm epsilon", in_range(1e-12, 1e-2))
      .add("model.activation", &c.model.activation,
           "gated MLP activation: gelu (exact, erf) | gelu_tanh (Gemma's) | silu (Llama's SwiGLU)",
           one_of({"gelu", "gelu_tanh", "silu"}))
      .add("model.tied_embeddings", &c.model.tied_embeddings, "the output head is the embedding matrix")
      .add("model.embed_scale", &c.model.embed_scale, "embeddings scaled by sqrt(d_model) (Gemma)")
      .add("model.qkv_bias", &c.model.qkv_bias, "biases on the query, key and value projections (Qwen2)")
      .add("model.post_norms", &c.model.post_norms, "norms after attention and the MLP as well (Gemma-2)")
      .add("model.sliding_window", &c.model.sliding_window,
           "positions a query reaches back, itself included (0 = all)", in_range(0, 1 << 24))
      .add("model.full_attention_every", &c.model.full_attention_every,
           "with a window, layers k-1, 2k-1, ... attend fully (Gemma-2: 2; 0 = none)", in_range(0, 4096));
  r.add("data.dir", &c.data.dir, "prepared data directory", non_empty())
      .add("data.base_mix", &c.data.base_mix, "base model pretraining mix", valid_mix("data.base_mix"))
      .add("data.oracle_mix", &c.data.oracle_mix, "oracle pretraining mix (retain only)",
           valid_mix("data.oracle_mix"))
      .add("data.forget_mix", &c.data.forget_mix, "forget data (unlearning, relearning attacks)",
           valid_mix("data.forget_mix"))
      .add("data.retain_eval", &c.data.retain_eval, "streams whose validation CE is retain_ce", non_empty())
      .add("data.forget_eval", &c.data.forget_eval, "streams whose validation CE is forget_ce", non_empty())
      .add("data.setting", &c.data.setting, "prepare: arith | lang", one_of({"arith", "lang"}))
      .add("data.sources", &c.data.sources, "prepare: unpacked packages from data/fetch")
      .add("data.english_dirs", &c.data.english_dirs,
           "prepare: retained corpora of your own, comma list: DIR of .txt, FILE.jsonl, mcq:FILE.jsonl (docs/DATA.md)")
      .add("data.jsonl_field", &c.data.jsonl_field, "prepare: the text field of .jsonl corpora", non_empty())
      .add("data.forget_language", &c.data.forget_language,
           "prepare (lang): the forget language's stream name (use it in the mixes)", non_empty())
      .add("data.forget_script", &c.data.forget_script,
           "prepare (lang): the forget script's Unicode ranges, hex, comma list (Hangul: AC00-D7A3)", non_empty())
      .add("data.forget_script_share", &c.data.forget_script_share,
           "prepare (lang): share of a line's letters in forget_script for the line to be kept", in_range(0.0, 1.0))
      .add("data.forget_sources", &c.data.forget_sources,
           "prepare (lang): PACKAGE/PATH dirs under data.sources holding the forget language's text (comma list)")
      .add("data.forget_dirs", &c.data.forget_dirs,
           "prepare (lang): forget corpora of your own, as data.english_dirs (unfiltered by the script)")
      .add("data.forget_mcq", &c.data.forget_mcq,
           "prepare: questions (JSONL: question, choices, answer) scored as forget_mcq_acc (relearn.metric)")
      .add("data.retain_mcq", &c.data.retain_mcq, "prepare: questions scored as retain_mcq_acc")
      .add("data.tokenizer_vocab", &c.data.tokenizer_vocab, "prepare: sentencepiece vocab size",
           at_least(300))
      .add("data.tokenizer", &c.data.tokenizer,
           "prepare: a model's tokenizer (HF model dir, tokenizer.json or tokenizer.model; empty = train one)")
      .add("data.val_fraction", &c.data.val_fraction,
           "prepare: share of documents held out for validation, and as many again for test", in_range(0.001, 0.33))
      .add("data.arith_problems", &c.data.arith_problems, "prepare: training problems per operation",
           at_least(1))
      .add("data.max_text_bytes", &c.data.max_text_bytes, "prepare: cap on each language's text (0 = all)",
           at_least<int64_t>(0));
  r.add("optim.lr", &c.optim.lr, "peak learning rate", in_range(1e-12, 10.0))
      .add("optim.min_lr", &c.optim.min_lr, "final learning rate of the cosine schedule", in_range(0.0, 10.0))
      .add("optim.warmup", &c.optim.warmup, "linear warmup steps", at_least(0))
      .add("optim.schedule", &c.optim.schedule, "cosine | constant", one_of({"cosine", "constant"}))
      .add("optim.weight_decay", &c.optim.weight_decay, "AdamW weight decay", in_range(0.0, 1.0))
      .add("optim.beta1", &c.optim.beta1, "AdamW beta1", in_range(0.0, 0.999999))
      .add("optim.beta2", &c.optim.beta2, "AdamW beta2", in_range(0.0, 0.999999))
      .add("optim.eps", &c.optim.eps, "AdamW epsilon", in_range(1e-12, 1.0))
      .add("optim.grad_clip", &c.optim.grad_clip, "global grad-norm clip (0 = off)", at_least(0.0))
      .add("optim.fused", &c.optim.fused, "AdamW as LibTorch's fused kernel (false: per-tensor ops, same arithmetic)");
  r.add("train.steps", &c.train.steps, "optimizer steps", at_least(1))
      .add("train.batch_size", &c.train.batch_size, "sequences per micro-batch per rank", in_range(1, 1 << 20))
      .add("train.accum", &c.train.accum, "micro-batches per optimizer step", in_range(1, 1 << 20))
      .add("train.precision", &c.train.precision, "bf16 (autocast, fp32 master weights) | fp32",
           one_of({"bf16", "fp32"}))
      .add("train.log_every", &c.train.log_every, "steps between training metric lines", at_least(1))
      .add("train.eval_every", &c.train.eval_every, "steps between evaluations (0 = end only)", at_least(0))
      .add("train.ckpt_every", &c.train.ckpt_every, "steps between checkpoints (0 = end only)", at_least(0))
      .add("train.keep_ckpts", &c.train.keep_ckpts, "checkpoints kept besides the final one", at_least(1))
      .add("train.max_skipped_steps", &c.train.max_skipped_steps,
           "consecutive steps with a non-finite loss or gradient skipped (not applied) before the run stops (0: "
           "stop at the first)",
           in_range(0, 1 << 20))
      .add("train.fused_loss", &c.train.fused_loss,
           "CE and distillation KL from the output head chunk by chunk, never holding the whole logits "
           "(false: the reference path on whole logits; same results to rounding)")
      .add("train.fused_blocks", &c.train.fused_blocks,
           "each block's q/k/v and gate/up projections as one product each; the gated activation, rotary, the "
           "causal softmax and RMSNorm as one autograd node each, on CPUs each one vectorised loop "
           "(model/block_kernels.h, model/vector_loops.h; false: the written-out reference path; same results "
           "to rounding)")
      .add("train.loss_chunk", &c.train.loss_chunk,
           "positions per chunk of train.fused_loss (0: as many as 32 MiB of fp32 logits hold, at least 512)",
           at_least<int64_t>(0));
  r.add("eval.batches", &c.eval.batches, "evaluation batches per stream, on validation and on test", at_least(1))
      .add("eval.arith_per_op", &c.eval.arith_per_op,
           "arithmetic problems per operation and format in each scored set (validation, test, "
           "generalisation; at most 100)",
           in_range(0, 100))
      .add("eval.max_new_tokens", &c.eval.max_new_tokens, "greedy tokens decoded per problem", at_least(1));
  r.add("dist.backend", &c.dist.backend, "auto (nccl with run.device = cuda in a CUDA build, else gloo) | gloo | nccl",
        one_of({"auto", "gloo", "nccl"}))
      .add("dist.bucket_mb", &c.dist.bucket_mb, "gradient all-reduce bucket size in MB", in_range(0.001, 4096.0))
      .add("dist.zero", &c.dist.zero, "ZeRO stage: 0 (replicated) | 1 (optimizer state sharded) | 3 (parameters, gradients and optimizer state sharded)",
           std::function<std::string(const int&)>(
               [](const int& v) { return v == 0 || v == 1 || v == 3 ? "" : "must be 0, 1 or 3"; }))
      .add("dist.recompute", &c.dist.recompute,
           "zero 3: keep only each unit's input and recompute its forward in backward (less activation memory, "
           "one more forward per step)")
      .add("dist.shard_group", &c.dist.shard_group,
           "zero 3: shard each unit within groups of this many consecutive ranks and replicate across the groups "
           "(hybrid sharding: gathers inside a group, one all-reduce across; 0 = one group of all ranks)",
           at_least(0))
      .add("dist.timeout_s", &c.dist.timeout_s, "seconds a collective may wait before a rank counts as lost",
           in_range(0.5, 86400.0))
      .add("dist.store", &c.dist.store, "rendezvous: tcp | file", one_of({"tcp", "file"}))
      .add("dist.store_path", &c.dist.store_path, "file rendezvous path (shared by all ranks)")
      .add("dist.addr", &c.dist.addr,
           "tcp rendezvous across hosts: rank 0's address that the other hosts reach (default: its hostname's)")
      .add("dist.secret_file", &c.dist.secret_file,
           "a job launched without MPI: a file (mode 600) holding the job's secret, if UNDO_DIST_SECRET is unset");
  r.add("pretrain.target", &c.pretrain.target, "base (data.base_mix) | oracle (data.oracle_mix)",
        one_of({"base", "oracle"}));
  std::set<std::string> methods;
  for (auto& m : unlearning_methods()) methods.insert(m.name);
  static const std::string method_help = unlearning_method_names();  // the registry keeps the pointer
  r.add("unlearn.method", &c.unlearn.method, method_help.c_str(), one_of(methods))
      .add("unlearn.steps", &c.unlearn.steps, "unlearning steps", at_least(1))
      .add("unlearn.lr", &c.unlearn.lr, "constant learning rate of unlearning", in_range(1e-12, 1.0))
      .add("unlearn.retain_coef", &c.unlearn.retain_coef,
           "weight of the retain CE (GradDiff a: paper 1 language, 15 arithmetic; MaxEnt 1)", at_least(0.0))
      .add("unlearn.sam_rho", &c.unlearn.sam_rho, "SAM radius (0 = off; paper 0.01-0.05)", in_range(0.0, 1.0))
      .add("unlearn.rmu_layers", &c.unlearn.rmu_layers, "RMU: blocks whose mlp.down is trained (\"\" = 0..rmu_layer)")
      .add("unlearn.rmu_layer", &c.unlearn.rmu_layer, "RMU: block l whose output is steered (-1 = middle)",
           at_least(-1))
      .add("unlearn.rmu_c", &c.unlearn.rmu_c, "RMU steering coefficient c (paper 6.5)", at_least(0.0))
      .add("unlearn.rmu_alpha", &c.unlearn.rmu_alpha, "RMU retain weight (paper 1200)", at_least(0.0))
      .add("unlearn.rmu_retain_term", &c.unlearn.rmu_retain_term, "RMU: keep the retain term (default on)")
      .add("unlearn.npo_beta", &c.unlearn.npo_beta, "NPO inverse temperature beta (paper 0.1)", in_range(1e-6, 100.0))
      .add("unlearn.simnpo_beta", &c.unlearn.simnpo_beta, "SimNPO inverse temperature beta (paper 2.5)",
           in_range(1e-6, 100.0))
      .add("unlearn.simnpo_gamma", &c.unlearn.simnpo_gamma, "SimNPO reward margin gamma (paper 0)",
           in_range(-100.0, 100.0))
      .add("unlearn.repnoise_alpha", &c.unlearn.repnoise_alpha,
           "RepNoise: weight of -log(1 + logit-lens CE on forget) (paper 1)", at_least(0.0))
      .add("unlearn.repnoise_beta", &c.unlearn.repnoise_beta,
           "RepNoise: weight of MMD(forget activations, Gaussian) (paper 0.001)", at_least(0.0));
  r.add("distill.init", &c.distill.init, "student start: random (Unlearn-and-Distill) | noised (UNDO)",
        one_of({"random", "noised"}))
      .add("distill.alpha", &c.distill.alpha, "UNDO noise alpha", in_range(0.0, 1.0))
      .add("distill.beta", &c.distill.beta, "UNDO noise beta", in_range(0.0, 1.0))
      .add("distill.steps", &c.distill.steps, "maximum distillation steps", at_least(1))
      .add("distill.lr", &c.distill.lr, "peak learning rate (paper: 9e-4 language, 7e-4 arithmetic)",
           in_range(1e-12, 1.0))
      .add("distill.min_lr", &c.distill.min_lr, "final cosine learning rate (paper: 7e-4 / 7e-5)", in_range(0.0, 1.0))
      .add("distill.warmup", &c.distill.warmup, "warmup steps (paper 50)", at_least(0))
      .add("distill.check_every", &c.distill.check_every, "steps between stopping-rule checks", at_least(1))
      .add("distill.stop_metric", &c.distill.stop_metric, "auto | retain_ce | retain_acc | none",
           one_of({"auto", "retain_ce", "retain_acc", "none"}))
      .add("distill.stop_tol", &c.distill.stop_tol, "retain_ce: relative gap; retain_acc: absolute gap",
           in_range(0.0, 10.0))
      .add("distill.data_seed", &c.distill.data_seed, "seed of the distillation stream (shared by all students)")
      .add("distill.data_offset", &c.distill.data_offset, "first sequence of the distillation stream", at_least(0))
      .add("distill.cache", &c.distill.cache, "teacher logits: auto (cache, built if missing) | off (online) | require",
           one_of({"auto", "off", "require"}))
      .add("distill.cache_dir", &c.distill.cache_dir,
           "directory of teacher-logit caches (empty: <run.dir>/logit-cache; a sweep passes sweep.cache_root)")
      .add("distill.cache_k", &c.distill.cache_k,
           "top-k log-probs cached per position (0 = none: the draws are the whole target)", at_least(0))
      .add("distill.cache_samples", &c.distill.cache_samples,
           "draws per position: from the teacher's whole distribution when cache_k = 0, else from its mass outside "
           "the top-k (0 = top-k only)",
           in_range(0, 4096))
      .add("distill.cache_dtype", &c.distill.cache_dtype,
           "cached log-prob type: f32, f16 or q8 (8 bits, steps of 1/16 nat)", one_of({"f16", "f32", "q8"}))
      .add("distill.cache_deflate", &c.distill.cache_deflate, "deflate level of the cache (0 = off)", in_range(0, 9));
  r.add("relearn.lrs", &c.relearn.lrs, "attack learning rates, comma-separated (worst case taken over them)",
        number_list(1e-12, 1.0))
      .add("relearn.seeds", &c.relearn.seeds, "attack seeds, comma-separated (data order)", number_list(0, 1e18))
      .add("relearn.steps", &c.relearn.steps, "attack steps per LR (paper 500)", at_least(1))
      .add("relearn.eval_every", &c.relearn.eval_every, "steps between evaluations of the attacked model (paper 5)",
           at_least(1))
      .add("relearn.batch_size", &c.relearn.batch_size,
           "attack sequences per micro-batch per rank (0 = from relearn.forget_share; train.batch_size = the strong "
           "attack)",
           in_range(0, 1 << 20))
      .add("relearn.accum", &c.relearn.accum, "attack micro-batches per optimizer step", in_range(1, 1 << 20))
      .add("relearn.forget_share", &c.relearn.forget_share,
           "with relearn.batch_size 0: the share of pretraining's forget tokens the whole attack replays (paper ~0.01)",
           in_range(1e-6, 1.0))
      .add("relearn.extend", &c.relearn.extend,
           "doublings of the largest LR while the worst case sits at it (0 = the grid as given)", in_range(0, 20))
      .add("relearn.metric", &c.relearn.metric, "forget metric the worst LR is judged on for the extension",
           one_of({"auto", "forget_acc", "forget_answer_ce", "forget_ce", "forget_mcq_acc"}));
}


// Heads must be even-sized (rotary pairs), made of d_model unless head_dim
// says otherwise, and the key/value heads must divide the query heads: "" or why not.
std::string heads_problem(const ModelConfig& m) {
  if (m.head_dim == 0 && !(m.d_model % m.n_heads == 0 && (m.d_model / m.n_heads) % 2 == 0))
    return "model.d_model = " + std::to_string(m.d_model) + " must be a multiple of 2 x model.n_heads = " +
           std::to_string(m.n_heads) + " (or give model.head_dim)";
  if (m.head_dim % 2 != 0) return "model.head_dim = " + std::to_string(m.head_dim) + " must be even";
  if (m.n_heads % m.kv_heads() != 0)
    return "model.n_kv_heads = " + std::to_string(m.n_kv_heads) + " must divide model.n_heads = " +
           std::to_string(m.n_heads);
  return "";
}

// The model's weights against this machine's memory, from the sizes alone
// and in floating point (their product can pass 2^63): sizes each within
// their key's range but together past the memory ended in a LibTorch
// allocation backtrace. The weights are made on the host (the init is the
// same on every device), whole unless ZeRO-3 shards them, where only the
// largest tensor (the embedding) is ever whole. "" or why not.
std::string model_memory_problem(const ModelConfig& m, int zero) {
  const double d = m.d_model, heads = double(m.n_heads) * m.head_size(), kv = double(m.kv_heads()) * m.head_size();
  const double embedding = double(m.vocab_size) * d;
  const double layer = d * heads * 2 + d * kv * 2 + 3 * d * double(m.d_ff);
  const double params = embedding * (m.tied_embeddings ? 1 : 2) + double(m.n_layers) * layer;
  const double memory = double(::sysconf(_SC_PHYS_PAGES)) * double(::sysconf(_SC_PAGESIZE));
  const double whole = 4 * (zero == 3 ? embedding : params);  // fp32 bytes
  if (memory <= 0 || whole <= memory) return "";
  std::ostringstream os;
  os.precision(3);
  os << "model.vocab_size, model.d_model, model.n_layers, model.n_heads and model.d_ff make " << params
     << " parameters: " << whole / double(1 << 30) << " GiB in fp32" << (zero == 3 ? " for the embedding alone" : "")
     << ", more than this machine's " << memory / double(1 << 30) << " GiB of memory";
  return os.str();
}

void validate_all(const std::vector<ConfigKey>& keys, const std::map<std::string, std::string>& origin,
                  const Config& cfg, const std::string& stage) {
  for (auto& k : keys) {
    const std::string text = k.value();
    auto fail = [&](const std::string& why) {
      auto it = origin.find(k.name);
      throw InputError("config error: " + k.name + " = '" + printable(text) + "' (from " +
                       (it == origin.end() ? std::string("default") : it->second) + "): " + why);
    };
    // A control character would be written raw into config.ini, which would
    // then no longer reproduce the run (a newline starts a new key).
    if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
      fail("contains a control character");
    if (!k.validate) continue;
    std::string why = k.validate();
    if (!why.empty()) fail(why);
  }
  if (auto why = heads_problem(cfg.model); !why.empty()) throw InputError("config error: " + why);
  // A sweep is planned where its jobs do not run (a login node); each job checks its own machine.
  if (auto why = stage == "sweep" ? "" : model_memory_problem(cfg.model, cfg.dist.zero); !why.empty())
    throw InputError("config error: " + why);
  if (cfg.dist.recompute && cfg.dist.zero != 3)
    throw InputError("config error: dist.recompute = 1 needs dist.zero = 3 (only zero 3 recomputes; dist.zero is " +
                     std::to_string(cfg.dist.zero) + ")");
  if (cfg.dist.shard_group > 0 && cfg.dist.zero != 3)
    throw InputError("config error: dist.shard_group = " + std::to_string(cfg.dist.shard_group) +
                     " needs dist.zero = 3 (only zero 3 shards; dist.zero is " + std::to_string(cfg.dist.zero) + ")");
  if (cfg.optim.min_lr > cfg.optim.lr)
    throw InputError("config error: optim.min_lr = " + format_double(cfg.optim.min_lr) +
                     " exceeds optim.lr = " + format_double(cfg.optim.lr));
}

}  // namespace

namespace {
// A Boost parser error as text. Boost fills its message template by replacing
// %tokens% with the offending name and value, and loops for ever when those
// contain a token themselves (found by fuzz/config_fuzz.cpp: a value holding
// "%value%"). Where the input holds a '%', the message is made here from the
// error's kind and option name, never by Boost.
std::string boost_message(const po::error& e, bool input_has_percent) {
  auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
  if (!named || !input_has_percent) return printable(e.what());
  const char* kind = dynamic_cast<const po::unknown_option*>(&e)            ? "unknown key"
                     : dynamic_cast<const po::validation_error*>(&e)        ? "invalid value for"
                     : dynamic_cast<const po::multiple_occurrences*>(&e)    ? "more than one value for"
                     : dynamic_cast<const po::invalid_syntax*>(&e)          ? "bad syntax at"
                     : dynamic_cast<const po::required_option*>(&e)         ? "missing"
                                                                            : "cannot read";
  return std::string(kind) + " '" + printable(named->get_option_name()) + "' (the input holds a '%')";
}

// For an unknown key, the known one it is nearest to (core/spelling.h).
std::string unknown_key_hint(const po::error& e, const po::options_description& known) {
  auto* unknown = dynamic_cast<const po::unknown_option*>(&e);
  if (!unknown) return "";
  std::string typed = unknown->get_option_name();
  typed.erase(0, typed.find_first_not_of('-'));
  std::vector<std::string> names;
  for (auto& o : known.options()) names.push_back(o->long_name());
  return did_you_mean(typed, names);
}
}  // namespace

std::string printable(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (c >= 0x20 && c < 0x7f) {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

RopeScaling parse_rope_scaling(const std::string& text) {
  RopeScaling r;
  auto parts = split_list(text, ':');
  auto bad = [&](const std::string& why) -> InputError {
    return InputError("model.rope_scaling = '" + printable(text) + "': " + why);
  };
  if (parts.empty()) throw bad("empty (none, linear:FACTOR or llama3:FACTOR:LOW:HIGH:ORIGINAL_POSITIONS)");
  r.type = parts[0];
  auto real = [&](size_t i, const char* what) {
    double v = parse_real("model.rope_scaling's " + std::string(what), parts[i], 0.0);
    if (!(v > 0)) throw bad(std::string(what) + " must be > 0");
    return v;
  };
  if (r.type == "none" && parts.size() == 1) return r;
  if (r.type == "linear" && parts.size() == 2) {
    r.factor = real(1, "factor");
    return r;
  }
  if (r.type == "llama3" && parts.size() == 5) {
    r.factor = real(1, "factor");
    r.low_freq_factor = real(2, "low_freq_factor");
    r.high_freq_factor = real(3, "high_freq_factor");
    if (r.high_freq_factor <= r.low_freq_factor) throw bad("high_freq_factor must exceed low_freq_factor");
    r.original_positions = parse_integer("model.rope_scaling's original positions", parts[4], 1, 1 << 30);
    return r;
  }
  throw bad("not none, linear:FACTOR or llama3:FACTOR:LOW:HIGH:ORIGINAL_POSITIONS");
}

std::string model_config_problem(const ModelConfig& model) {
  Config cfg;
  cfg.model = model;
  for (auto& k : describe(cfg)) {
    if (k.name.rfind("model.", 0) != 0 || !k.validate) continue;
    std::string why = k.validate();
    if (!why.empty()) return k.name + " = '" + k.value() + "': " + why;
  }
  if (model.vocab_size < 1) return "model.vocab_size = " + std::to_string(model.vocab_size) + ": must be >= 1";
  return heads_problem(model);
}

std::vector<std::string> split_list(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep)) {
    size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

void check_file_name(const std::string& key, const std::string& value) {
  const bool ok = !value.empty() && value.size() <= 128 && value != "." && value != ".." &&
                  std::all_of(value.begin(), value.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '+';
                  });
  if (!ok)
    throw InputError(key + ": '" + printable(value) +
                     "' is not a name (letters, digits, '_', '-', '.', '+'; it becomes part of a file name)");
}

std::vector<std::pair<std::string, double>> parse_mix(const std::string& key, const std::string& text) {
  std::vector<std::pair<std::string, double>> mix;
  double total = 0;
  for (auto& part : split_list(text)) {
    auto colon = part.find(':');
    if (colon == std::string::npos || colon == 0)
      throw InputError(key + " = '" + text + "': entry '" + part + "' is not stream:weight");
    char* end = nullptr;
    std::string w = part.substr(colon + 1);
    double v = std::strtod(w.c_str(), &end);
    if (w.empty() || *end != '\0' || !(v > 0) || !std::isfinite(v))
      throw InputError(key + " = '" + text + "': weight '" + w + "' must be a positive number");
    check_file_name(key + " = '" + text + "': stream", part.substr(0, colon));  // DIR/<stream>.<split>.bin
    mix.emplace_back(part.substr(0, colon), v);
    total += v;
  }
  if (mix.empty()) throw InputError(key + " = '" + text + "': empty mix");
  for (auto& m : mix) m.second /= total;
  return mix;
}

int64_t parse_integer(const std::string& key, const std::string& text, int64_t min, int64_t max) {
  try {
    size_t used = 0;
    long long v = std::stoll(text, &used);
    if (used == text.size() && v >= min && v <= max) return v;
  } catch (const std::exception&) {
  }
  throw InputError(key + " = '" + text + "': expected an integer >= " + std::to_string(min));
}

double parse_real(const std::string& key, const std::string& text, double min) {
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v) && v >= min) return v;
  } catch (const std::exception&) {
  }
  throw InputError(key + " = '" + text + "': expected a number >= " + format_double(min));
}

std::vector<double> parse_number_list(const std::string& key, const std::string& text) {
  std::vector<double> out;
  for (auto& part : split_list(text)) {
    char* end = nullptr;
    double v = std::strtod(part.c_str(), &end);
    if (*end != '\0' || !std::isfinite(v)) throw InputError(key + " = '" + text + "': '" + part + "' is not a number");
    out.push_back(v);
  }
  if (out.empty()) throw InputError(key + " = '" + text + "': empty list");
  return out;
}

std::vector<ConfigKey> describe(Config& cfg) {
  Registry r(nullptr);
  describe_into(cfg, r);
  return r.keys;
}

std::string to_ini(Config& cfg) {
  std::ostringstream os;
  std::string section;
  os << "# resolved configuration: `undo <stage> --config THIS_FILE` reproduces the run\n";
  for (auto& k : describe(cfg)) {
    auto dot = k.name.find('.');
    std::string s = k.name.substr(0, dot);
    if (s != section) {
      os << (section.empty() ? "" : "\n") << "[" << s << "]\n";
      section = s;
    }
    os << k.name.substr(dot + 1) << " = " << k.value() << "\n";
  }
  return os.str();
}

namespace {

// The general keys `stage` sets itself (an unlearning budget replaces optim.lr):
// it never reads them from the user.
std::vector<std::string> keys_set_by(const std::string& stage) {
  if (stage == "unlearn") return stage_owned_keys(TrainingStage::Unlearn);
  if (stage == "distill") return stage_owned_keys(TrainingStage::Distill);
  if (stage == "relearn") return stage_owned_keys(TrainingStage::Relearn);
  return {};
}

// `undo STAGE --help`: the stage's own options and its section's keys first,
// then the general keys it reads; `--help-all` adds the keys it does not read
// (other stages' sections, and the general keys it sets itself).
void print_stage_help(const std::string& stage, const po::options_description& general,
                      const po::options_description& stage_desc, const po::options_description& keys, bool all) {
  const std::string section = stage == "cache-logits" ? "distill" : stage;
  po::options_description own("Keys of `undo " + stage + "` (" + section + ".*)");
  po::options_description shared("General keys `undo " + stage + "` reads");
  po::options_description others("Keys `undo " + stage + "` does not read (other stages', or set by this stage itself)");
  const auto set_here = keys_set_by(stage);
  for (auto& o : keys.options()) {
    const std::string& name = o->long_name();
    const bool reads = stage_reads_key(stage, name) && std::find(set_here.begin(), set_here.end(), name) == set_here.end();
    (name.rfind(section + ".", 0) == 0 ? own : reads ? shared : others).add(o);
  }
  std::cout << "usage: undo " << stage << " [--config FILE] [--section.key VALUE ...] [--run-dir DIR]\n\n"
            << general << "\n";
  for (const po::options_description* group : {&stage_desc, static_cast<const po::options_description*>(&own),
                                                 static_cast<const po::options_description*>(&shared)})
    if (!group->options().empty()) std::cout << *group << "\n";
  if (all && !others.options().empty()) std::cout << others << "\n";
  if (!all && !others.options().empty())
    std::cout << others.options().size() << " keys this stage does not read are left out: `undo " << stage
              << " --help-all` lists them.\n";
}

}  // namespace

bool parse_config(int argc, const char* const* argv, const std::string& stage, Config& cfg,
                  const std::vector<StageOption>& stage_options) {
  po::options_description keys("Configuration keys (INI [section] key = value, or --section.key VALUE)");
  Registry r(&keys);
  describe_into(cfg, r);
  po::options_description general("General options");
  std::vector<std::string> config_files;
  general.add_options()("help,h", "print this help")(
      "config", po::value<std::vector<std::string>>(&config_files), "INI config file (later files override)")(
      "help-all", "print this help with the keys only other stages read")(
      "run-dir", po::value<std::string>(), "alias of --run.dir")("resume", "alias of --run.resume true");
  po::options_description stage_desc("Options of `undo " + stage + "`");
  for (auto& o : stage_options)
    stage_desc.add_options()(o.name.c_str(), po::value<std::string>(o.value)->default_value(*o.value), o.help.c_str());
  po::options_description all;
  all.add(general).add(stage_desc).add(keys);

  po::variables_map vm;
  std::map<std::string, std::string> origin;
  try {
    // Command-line values are stored first so that they take precedence.
    auto cl = po::command_line_parser(argc, argv).options(all).run();
    for (auto& o : cl.options) origin[o.string_key] = "command line";
    po::store(cl, vm);
    if (vm.count("config")) config_files = vm["config"].as<std::vector<std::string>>();
    for (auto it = config_files.rbegin(); it != config_files.rend(); ++it) {
      if (std::filesystem::is_directory(*it))
        throw InputError("config error: --config '" + *it + "' is a directory, not a file");
      std::ifstream file(*it, std::ios::binary);
      if (!file) throw InputError("config error: --config '" + *it + "': cannot open file");
      std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
      std::istringstream in(text);
      try {
        auto parsed = po::parse_config_file(in, keys, /*allow_unregistered=*/false);
        for (auto& o : parsed.options)
          if (!origin.count(o.string_key)) origin[o.string_key] = *it;
        po::store(parsed, vm);
      } catch (const po::error& e) {
        throw InputError("config error in " + *it + ": " + boost_message(e, text.find('%') != std::string::npos) +
                         unknown_key_hint(e, keys));
      }
    }
    if (vm.count("help") || vm.count("help-all")) {
      print_stage_help(stage, general, stage_desc, keys, vm.count("help-all") > 0);
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    bool percent = false;
    for (int i = 0; i < argc; ++i) percent = percent || std::strchr(argv[i], '%');
    throw InputError(std::string("config error: ") + boost_message(e, percent) + unknown_key_hint(e, all));
  }
  if (vm.count("run-dir")) cfg.run.dir = vm["run-dir"].as<std::string>(), origin["run.dir"] = "command line";
  if (vm.count("resume")) cfg.run.resume = true;
  for (auto& o : stage_options) {
    if (o.required && o.value->empty()) throw InputError("undo " + stage + ": --" + o.name + " is required");
    if (o.existing_file && !o.value->empty() && !std::filesystem::is_regular_file(*o.value))
      throw InputError("--" + o.name + " '" + *o.value + "' does not exist");
  }
  validate_all(r.keys, origin, cfg, stage);
  for (auto& [k, v] : origin) cfg.origin[k] = v;
  return true;
}

}  // namespace undo
