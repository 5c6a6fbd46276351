// One flat configuration for every stage (nanoGPT's configurator, typed):
// INI file sections map to "section.key", every key can be overridden on the
// command line as --section.key VALUE, unknown keys and bad values are
// rejected before any compute starts (InputError, exit code 2).
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace undo {

struct RunConfig {
  // Where metrics, checkpoints and config.ini go. No default: undo writes
  // nothing in the current directory unless a path says so (require_run_dir).
  std::string dir;
  int64_t seed = 1234;
  int threads = 0;                   // 0 = cores per rank
  std::string device = "cpu";        // cpu | cuda (each rank takes GPU local_rank % visible GPUs)
  bool resume = false;
};

struct ModelConfig {
  int vocab_size = 0;  // 0 = take it from the tokenizer in data.dir
  int d_model = 64;
  int n_layers = 2;
  int n_heads = 4;
  int n_kv_heads = 0;   // key/value heads (grouped-query attention); 0 = n_heads
  int head_dim = 0;     // width of a head; 0 = d_model / n_heads
  int d_ff = 256;       // hidden width of the gated MLP
  int seq_len = 64;
  double softcap = 0;   // 0 = no logit soft-capping
  double attn_softcap = 0;  // attention scores soft-capped (Gemma-2); 0 = off
  double query_scale = 0;   // scores scaled by query_scale^-1/2 (Gemma-2's query_pre_attn_scalar); 0 = head_dim
  double rope_theta = 10000;
  std::string rope_scaling = "none";  // none | linear:FACTOR | llama3:FACTOR:LOW:HIGH:ORIGINAL_POSITIONS
  double norm_eps = 1e-6;
  // The gated MLP's activation: exact GELU (erf), Gemma's tanh approximation,
  // or SiLU (Llama's SwiGLU). gelu is the default because LibTorch 1.13's bf16
  // tanh-GELU CPU kernel was 10x slower.
  std::string activation = "gelu";  // gelu | gelu_tanh | silu
  bool tied_embeddings = true;  // the output head is the embedding (else its own matrix)
  bool embed_scale = true;      // embeddings multiplied by sqrt(d_model) on the way in (Gemma)
  bool qkv_bias = false;        // biases on the query, key and value projections (Qwen2)
  bool post_norms = false;      // norms after attention and after the MLP too (Gemma-2)
  int sliding_window = 0;       // attention reaches this many positions back, itself included; 0 = all
  int full_attention_every = 0; // with a window: layers k-1, 2k-1, ... attend fully (Gemma-2: 2); 0 = none

  int kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int head_size() const { return head_dim > 0 ? head_dim : d_model / n_heads; }
  // Whether layer `i` attends through the sliding window.
  bool layer_slides(int i) const {
    return sliding_window > 0 && !(full_attention_every > 0 && (i + 1) % full_attention_every == 0);
  }
};

// model.rope_scaling parsed: how rotary frequencies are stretched for long
// contexts (transformers' "linear" and "llama3" rope types).
struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_positions = 0;
};
// Throws InputError naming model.rope_scaling and what is wrong.
RopeScaling parse_rope_scaling(const std::string& text);

struct DataConfig {
  std::string dir = "data/prepared/tiny";  // prepared data: tokenizer, shards, manifest
  // Mixes are "stream:weight,stream:weight"; streams are shard names in data.dir.
  std::string base_mix = "english:0.75,addsub:0.125,muldiv:0.125";
  std::string oracle_mix = "english:0.875,addsub:0.125";
  std::string forget_mix = "muldiv:1";    // what unlearning and relearning attacks train on
  std::string retain_eval = "english,addsub";  // streams whose val CE is retain_ce
  std::string forget_eval = "muldiv";          // streams whose val CE is forget_ce
  // `undo data prepare` keys.
  std::string setting = "arith";  // arith | lang
  std::string sources = "data/raw/pkgs";  // unpacked packages from data/fetch
  // Retained and forgotten corpora of the user's (prepare/corpus_files.h): comma
  // lists of .txt directories, .jsonl files (text in jsonl_field) and
  // mcq:FILE.jsonl question files. Tests use generated text.
  std::string english_dirs = "";
  std::string jsonl_field = "text";
  // The language setting's forget language: its stream's name, the Unicode
  // ranges of its script (a line is kept when they hold forget_script_share of
  // its letters), where its text is (PACKAGE/PATH under data.sources, one
  // document per file) and extra plain-text dirs. Korean by default.
  std::string forget_language = "korean";
  std::string forget_script = "AC00-D7A3";  // comma list of hex code-point ranges (Hangul syllables)
  double forget_script_share = 0.3;
  std::string forget_sources =
      "libreoffice-help-ko/usr/share/libreoffice/help/ko,gnome-user-docs/usr/share/help/ko,"
      "installation-guide-amd64/usr/share/doc/installation-guide-amd64/ko,debian-faq-ko/usr/share/doc/debian/FAQ/ko";
  std::string forget_dirs = "";
  // Multiple-choice question files (data/mcq.h) scored as forget_mcq_acc and
  // retain_mcq_acc, half for validation, half for test; never also trained on.
  std::string forget_mcq = "";
  std::string retain_mcq = "";
  int tokenizer_vocab = 1024;
  // A model's own tokenizer (a Hugging Face model directory, a tokenizer.json
  // or a sentencepiece tokenizer.model); "" = train undo's sentencepiece on the corpus.
  std::string tokenizer = "";
  double val_fraction = 0.05;
  int arith_problems = 20000;       // training problems per operation
  int64_t max_text_bytes = 0;       // 0 = all; caps each language's text (for quick presets)
};

struct OptimConfig {
  double lr = 1e-3;
  double min_lr = 1e-4;
  int warmup = 10;
  std::string schedule = "cosine";  // cosine | constant
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double grad_clip = 1.0;  // 0 = off
  bool fused = true;       // one fused AdamW kernel (LibTorch's, CPU and CUDA) instead of per-tensor ops
};

struct TrainConfig {
  int steps = 100;
  int batch_size = 8;  // sequences per micro-batch per rank
  int accum = 1;       // micro-batches per optimizer step
  std::string precision = "bf16";  // bf16 (autocast, fp32 master weights) | fp32
  int log_every = 10;
  int eval_every = 50;   // 0 = only at the end
  int ckpt_every = 50;   // 0 = only at the end
  int keep_ckpts = 2;
  int max_skipped_steps = 5;  // consecutive non-finite steps skipped before the run stops (train/nonfinite_steps.h)
  bool fused_loss = true;  // CE and KL from the output head chunk by chunk, never the whole logits (model/head_loss.h)
  bool fused_blocks = true;  // fused projections, rotary, RMSNorm and CPU softmax (model/block_kernels.h)
  int64_t loss_chunk = 0;  // positions per chunk of fused_loss (0: model/head_loss.h's default_chunk_rows)
};

struct EvalConfig {
  int batches = 4;          // val windows = batches x train.batch_size per stream
  int arith_per_op = 100;   // equations and word problems each, per operation
  int max_new_tokens = 6;
};

struct DistConfig {
  std::string backend = "auto";  // auto (nccl with CUDA and a GPU per rank, else gloo) | gloo | nccl
  double bucket_mb = 25;         // gradient all-reduce bucket size
  int zero = 0;                  // ZeRO stage: 1 = optimizer state sharded across ranks, 3 = all state (distributed/zero3.h)
  bool recompute = false;        // zero 3: keep each unit's input only and recompute its forward in backward
  int shard_group = 0;           // zero 3: shard within groups of this many ranks, replicate across them (HSDP); 0 = all
  double timeout_s = 300;        // a collective that waits longer means a rank is lost
  std::string store = "tcp";     // tcp (rank 0 serves, address sent over MPI or MASTER_ADDR) | file
  std::string store_path = "";   // file store: a path on a filesystem all ranks share
  std::string addr = "";         // tcp store on several hosts: the address of rank 0 the others reach
  std::string secret_file = "";  // without MPI and UNDO_DIST_SECRET: the job's secret, readable only by you
};

// `undo unlearn`: the stage's own budget (spec: AdamW, weight decay 0, clip 1.0, constant LR).
struct UnlearnConfig {
  std::string method = "maxent";  // one of core/unlearning_methods.h
  int steps = 50;
  double lr = 4e-5;
  double retain_coef = 1.0;      // GradDiff's a (paper: 1 language, 15 arithmetic); MaxEnt's retain weight
  double sam_rho = 0;            // > 0 wraps the method in sharpness-aware minimisation
  std::string rmu_layers = "";   // layers whose MLP down-projection RMU trains ("" = 0..rmu_layer)
  int rmu_layer = -1;            // l: residual stream after this block (-1 = the middle block)
  double rmu_c = 6.5;            // steering coefficient c
  double rmu_alpha = 1200;       // weight of the retain term
  bool rmu_retain_term = true;   // the original code left it off in two settings by mistake
  // NPO (Zhang et al. 2024) and SimNPO (Fan et al. 2024): each paper's own defaults.
  double npo_beta = 0.1;
  double simnpo_beta = 2.5;
  double simnpo_gamma = 0.0;
  // RepNoise (Rosati et al. 2024): its paper's alpha and beta.
  double repnoise_alpha = 1.0;
  double repnoise_beta = 0.001;
};

// `undo distill`: the student, its budget and the stopping rule (undo-spec.md).
struct DistillConfig {
  std::string init = "random";  // random (Unlearn-and-Distill) | noised (UNDO: the teacher, noised)
  double alpha = 1.0;           // UNDO noise: interpolation towards noise
  double beta = 0.1;            // UNDO noise: scale of the Xavier draw
  int steps = 1000;
  double lr = 7e-4;
  double min_lr = 7e-5;
  int warmup = 50;
  int check_every = 20;          // evaluations of the stopping rule (spec: 50 language, 20 arithmetic)
  std::string stop_metric = "auto";  // auto (retain_acc with arithmetic, else retain_ce) | retain_ce | retain_acc | none
  double stop_tol = 0.05;        // retain_ce: relative gap; retain_acc: absolute gap to the teacher
  // The distillation stream is numbered apart from the student's seed, so one
  // teacher pass (a logit cache) serves students of every seed and alpha.
  int data_seed = 1;
  int data_offset = 0;           // first sequence of the stream
  // Teacher-logit cache (cache/logit_cache.h).
  std::string cache = "auto";    // auto (use a matching cache, build it if missing) | off (online teacher) | require
  std::string cache_dir;  // "" = <run.dir>/logit-cache (a sweep passes its cache root)
  // What the cache keeps per position: 12 stratified draws from the teacher's
  // whole distribution with q8 log-probs (38.5 bytes a position), chosen over
  // top-32 + 32 draws (262.5) and top-4 + 8 draws (42.5) by the comparison in
  // docs/LOGIT_CACHE.md: the same robustness within its intervals, an unbiased
  // gradient at any log-prob precision, and the fastest build.
  int cache_k = 0;               // top-k log-probs kept per position (capped at the vocab; 0 = none)
  // Draws per position: from the teacher's whole distribution when cache_k = 0,
  // else from its mass outside the top-k (0 = the top-k lower bound).
  int cache_samples = 12;
  std::string cache_dtype = "q8";  // f32 | f16 | q8
  int cache_deflate = 0;         // 0 = off, 1-9 = deflate level
};

// `undo relearn`: the attack (spec: constant LR, 1 warmup step, weight decay 0,
// trained on forget data only; worst case over LRs and seeds).
struct RelearnConfig {
  std::string lrs = "1e-3,7e-4,4e-4,1e-4,7e-5,5e-5,1e-5,7e-6,4e-6,1e-6";  // the paper's 10
  std::string seeds = "1";
  int steps = 500;
  int eval_every = 5;
  // The attack's own batch, per rank (0: the batch whose whole attack replays
  // forget_share of the forget tokens pretraining saw, at least one row).
  // The strong attack of sessions 1-11 is batch_size = train.batch_size.
  int batch_size = 0;
  int accum = 1;
  double forget_share = 0.01;  // the paper's attack sees about 1% of them
  // Where the worst case sits at the largest LR, the grid is extended by
  // doubling that LR, at most `extend` times (or until an attack diverges: results/grid_extension.h).
  int extend = 4;
  std::string metric = "auto";  // the forget metric the worst case is judged on (auto: accuracy where measured)
};

struct PretrainConfig {
  std::string target = "base";  // base (base_mix) | oracle (oracle_mix)
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  OptimConfig optim;
  TrainConfig train;
  EvalConfig eval;
  DistConfig dist;
  PretrainConfig pretrain;
  UnlearnConfig unlearn;
  DistillConfig distill;
  RelearnConfig relearn;
  // Where each key given explicitly came from ("command line" or a config
  // file's path); keys absent here have their defaults. Filled by parse_config.
  std::map<std::string, std::string> origin;
  // The files a stage reads besides its config ("base" -> the --base file):
  // not keys, set by the stage before prepare_run. Their sha256 is part of the
  // run's identity (train/run_dir.h), so that --resume refuses another input.
  std::map<std::string, std::string> inputs;
};

// One described key: how to print it and how to validate it.
struct ConfigKey {
  std::string name, help;
  std::function<std::string()> value;      // current value as INI text
  std::function<std::string()> validate;   // "" when fine, else what is wrong
};

// A stage's own command-line option (--model CKPT, --format NAME, ...).
struct StageOption {
  std::string name, help;
  std::string* value;
  bool required = false;
  bool existing_file = false;  // when given, it must name an existing file
};

// Parses `argv` (after the stage name): --config FILE, --run-dir DIR, --resume,
// --help, the stage's options and any --section.key VALUE. Throws InputError
// naming the key, value and source on any problem. Returns false when --help
// was asked (help printed).
bool parse_config(int argc, const char* const* argv, const std::string& stage, Config& cfg,
                  const std::vector<StageOption>& stage_options = {});

// Every key with its current value, for `--help` and the resolved config.ini.
std::vector<ConfigKey> describe(Config& cfg);
// What is wrong with an architecture read from a file (a checkpoint): the
// model.* keys' own checks, with a concrete vocabulary. "" when nothing.
std::string model_config_problem(const ModelConfig& model);
std::string to_ini(Config& cfg);
std::string format_double(double v);  // shortest text that reads back exactly
// A value as a terminal can show it: control and non-ASCII bytes as \xNN
// (an error message never echoes raw bytes of a file).
std::string printable(const std::string& v);

// A value that becomes part of a file name (a stream, a method, a job name):
// letters, digits, '_', '-', '.', '+', never "." or "..", at most 128 bytes;
// throws InputError naming `key` and the value.
void check_file_name(const std::string& key, const std::string& value);
// "a:0.5,b:0.5" -> {{"a",0.5},{"b",0.5}}; throws InputError naming `key`
// (and a stream name that is not a file name).
std::vector<std::pair<std::string, double>> parse_mix(const std::string& key, const std::string& text);
// "1e-4, 4e-4" -> {1e-4, 4e-4}; throws InputError naming `key`.
std::vector<double> parse_number_list(const std::string& key, const std::string& text);
// A whole integer in [min, max], for command-line flags and sweep specs; throws InputError naming `key`.
int64_t parse_integer(const std::string& key, const std::string& text, int64_t min,
                      int64_t max = std::numeric_limits<int64_t>::max());
double parse_real(const std::string& key, const std::string& text, double min);
std::vector<std::string> split_list(const std::string& text, char sep = ',');

}  // namespace undo
