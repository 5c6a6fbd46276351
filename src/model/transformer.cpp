#include "model/transformer.h"

#include "model/block_kernels.h"
#include "model/device.h"
#include "model/profile_scope.h"

#include <cmath>

#include "core/error.h"

namespace undo {

RMSNormImpl::RMSNormImpl(int dim, double eps_, bool feeds_product_) : eps(eps_), feeds_product(feeds_product_) {
  weight = register_parameter("weight", torch::zeros({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  UNDO_PROFILE_SCOPE("undo::norm");
  if (fused) return rms_norm(x, weight, eps, feeds_product);
  auto xf = x.to(torch::kFloat);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (y * (1 + weight)).to(x.scalar_type());
}

namespace {
torch::nn::Linear linear(int in, int out, bool bias = false) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

// Rotates pairs (x[..., :h/2], x[..., h/2:]) by the position's angles.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  UNDO_PROFILE_SCOPE("undo::rotary");
  auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

// Rotary inverse frequencies of a head of `dim`, stretched as model.rope_scaling
// says (transformers' linear and llama3 rope types, computed alike).
torch::Tensor rope_inv_freq(const ModelConfig& cfg, int dim) {
  auto inv_freq = torch::pow(cfg.rope_theta, -torch::arange(0, dim, 2, torch::kDouble) / dim);
  const RopeScaling r = parse_rope_scaling(cfg.rope_scaling);
  if (r.type == "linear") return inv_freq / r.factor;
  if (r.type != "llama3") return inv_freq;
  // Long wavelengths are divided by the factor, short ones kept, and those
  // between blended smoothly.
  const double old_len = double(r.original_positions);
  const double low_wavelen = old_len / r.low_freq_factor, high_wavelen = old_len / r.high_freq_factor;
  auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = torch::where(wavelen > low_wavelen, inv_freq / r.factor, inv_freq);
  auto smooth = (old_len / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
  auto medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return torch::where(medium, smoothed, scaled);
}
}  // namespace

AttentionImpl::AttentionImpl(const ModelConfig& cfg, int layer)
    : n_heads(cfg.n_heads),
      n_kv_heads(cfg.kv_heads()),
      head_dim(cfg.head_size()),
      scale(1.0 / std::sqrt(cfg.query_scale > 0 ? cfg.query_scale : double(cfg.head_size()))),
      softcap(cfg.attn_softcap),
      window(cfg.layer_slides(layer) ? cfg.sliding_window : 0) {
  wq = register_module("wq", linear(cfg.d_model, n_heads * head_dim, cfg.qkv_bias));
  wk = register_module("wk", linear(cfg.d_model, n_kv_heads * head_dim, cfg.qkv_bias));
  wv = register_module("wv", linear(cfg.d_model, n_kv_heads * head_dim, cfg.qkv_bias));
  wo = register_module("wo", linear(n_heads * head_dim, cfg.d_model));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto B = x.size(0), T = x.size(1);
  auto shape = [&](torch::Tensor t, int heads) { return t.view({B, T, heads, head_dim}).transpose(1, 2); };
  torch::Tensor q, k, v;
  if (fused) {
    auto qkv = project_together(x, {wq, wk, wv});
    UNDO_PROFILE_SCOPE("undo::rotary");
    q = rotary(shape(qkv[0], n_heads), cos, sin, scale);
    k = rotary(shape(qkv[1], n_kv_heads), cos, sin);
    v = shape(qkv[2], n_kv_heads);
  } else {
    q = apply_rope(shape(wq(x), n_heads), cos, sin);
    k = apply_rope(shape(wk(x), n_kv_heads), cos, sin);
    v = shape(wv(x), n_kv_heads);
  }
  if (n_kv_heads != n_heads) {  // grouped-query: key/value head j serves query heads j*g .. j*g+g-1
    k = k.repeat_interleave(n_heads / n_kv_heads, 1);
    v = v.repeat_interleave(n_heads / n_kv_heads, 1);
  }
  // On GPUs, scaled-dot-product attention: flash kernels, never a [T, T] score
  // matrix in memory (it has no soft-cap or window, which take the written-out
  // path). On CPUs the same arithmetic spelled out is faster at our sizes
  // (LibTorch 2.11, 2 cores, bf16, T 128: 17% more tokens/s than its fused CPU
  // kernel; docs/PERFORMANCE.md), so CPUs take the matrix products.
  torch::Tensor out;
  {
    UNDO_PROFILE_SCOPE("undo::attention");
    if (x.is_cuda() && softcap == 0 && window == 0)
      out = torch::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true,
                                                fused ? 1.0 : scale);  // fused: q carries the scale
    else
      out = fused ? causal_attention(q, k, v, softcap, window) : masked_softmax_attention(q, k, v, scale, softcap, window);
  }
  return wo(out.transpose(1, 2).reshape({B, T, n_heads * head_dim}));
}

torch::Tensor masked_softmax_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                       double scale, double softcap, int window) {
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * (scale > 0 ? scale : 1.0 / std::sqrt(double(q.size(-1))));
  if (softcap > 0) scores = torch::tanh(scores / softcap) * softcap;
  scores = scores.masked_fill(hidden_keys(q.size(-2), window, q.device()), -std::numeric_limits<float>::infinity());
  return torch::matmul(torch::softmax(scores.to(torch::kFloat), -1).to(v.scalar_type()), v);
}

MlpImpl::MlpImpl(int d_model, int d_ff, const std::string& activation_) : activation(activation_) {
  gate = register_module("gate", linear(d_model, d_ff));
  up = register_module("up", linear(d_model, d_ff));
  down = register_module("down", linear(d_ff, d_model));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (fused) return down(gated_activation(project_concatenated(x, {gate, up}), activation));
  return down(undo::activation(gate(x), activation) * up(x));
}

BlockImpl::BlockImpl(const ModelConfig& cfg, int layer) {
  attn_norm = register_module("attn_norm", RMSNorm(cfg.d_model, cfg.norm_eps, /*feeds_product=*/true));
  attn = register_module("attn", Attention(cfg, layer));
  mlp_norm = register_module("mlp_norm", RMSNorm(cfg.d_model, cfg.norm_eps, /*feeds_product=*/true));
  mlp = register_module("mlp", Mlp(cfg.d_model, cfg.d_ff, cfg.activation));
  if (cfg.post_norms) {
    post_attn_norm = register_module("post_attn_norm", RMSNorm(cfg.d_model, cfg.norm_eps));
    post_mlp_norm = register_module("post_mlp_norm", RMSNorm(cfg.d_model, cfg.norm_eps));
  }
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto a = attn(attn_norm(x), cos, sin);
  auto h = x + (post_attn_norm ? post_attn_norm(a) : a);
  auto m = mlp(mlp_norm(h));
  return h + (post_mlp_norm ? post_mlp_norm(m) : m);
}

namespace {
// A part's parameters keep their shapes and lose their memory (see storage = false).
void drop_storage(torch::nn::Module& part) {
  for (auto& p : part.parameters()) free_storage(p);
}
}  // namespace

TransformerImpl::TransformerImpl(const ModelConfig& c, bool storage) : cfg(c) {
  UNDO_CHECK(cfg.vocab_size > 0, "model.vocab_size must be resolved before building the model");
  embed = register_module("embed", torch::nn::Embedding(cfg.vocab_size, cfg.d_model));
  if (!storage) drop_storage(*embed);
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < cfg.n_layers; ++i) {
    layers->push_back(Block(cfg, i));
    if (!storage) drop_storage(*layers[size_t(i)]);
  }
  final_norm = register_module("final_norm", RMSNorm(cfg.d_model, cfg.norm_eps));
  if (!storage) drop_storage(*final_norm);
  if (!cfg.tied_embeddings) {
    lm_head = register_module("lm_head", linear(cfg.d_model, cfg.vocab_size));
    if (!storage) drop_storage(*lm_head);
  }
  auto angles = torch::outer(torch::arange(cfg.seq_len, torch::kDouble), rope_inv_freq(cfg, cfg.head_size()));
  rope_cos = register_buffer("rope_cos", angles.cos().to(torch::kFloat));
  rope_sin = register_buffer("rope_sin", angles.sin().to(torch::kFloat));
}

void TransformerImpl::set_fused_blocks(bool on) {
  for (auto& m : modules()) {
    if (auto norm = std::dynamic_pointer_cast<RMSNormImpl>(m)) norm->fused = on;
    if (auto attn = std::dynamic_pointer_cast<AttentionImpl>(m)) attn->fused = on;
    if (auto mlp = std::dynamic_pointer_cast<MlpImpl>(m)) mlp->fused = on;
  }
}

torch::Tensor TransformerImpl::through(torch::nn::Module& unit,
                                      const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                                      const torch::Tensor& x) {
  return runner ? runner->run(unit, fn, x) : fn(x);
}

torch::Tensor TransformerImpl::embed_tokens(const torch::Tensor& tokens) {
  if (!cfg.embed_scale) return through(*embed, [this](const torch::Tensor& t) { return embed(t); }, tokens);
  // Gemma scales the embedding by sqrt(d) on the way in.
  const double scale = std::sqrt(double(cfg.d_model));
  return through(*embed, [this, scale](const torch::Tensor& t) { return embed(t) * scale; }, tokens);
}

torch::Tensor TransformerImpl::block(size_t i, const torch::Tensor& x) {
  auto b = layers[i]->as<Block>();
  auto T = x.size(1);
  auto cos = rope_cos.narrow(0, 0, T), sin = rope_sin.narrow(0, 0, T);
  return through(*b, [b, cos, sin](const torch::Tensor& h) { return b->forward(h, cos, sin); }, x);
}

torch::nn::Module& TransformerImpl::head_unit() {
  if (lm_head) return *lm_head;
  return *embed;
}

torch::Tensor TransformerImpl::head_parameter() { return lm_head ? lm_head->weight : embed->weight; }

torch::Tensor TransformerImpl::final_normed(const torch::Tensor& x) {
  return through(*final_norm, [this](const torch::Tensor& h) { return final_norm(h); }, x);
}

torch::Tensor TransformerImpl::output_logits(const torch::Tensor& x) {
  return through(head_unit(), [this](const torch::Tensor& h) { return head_logits(h, head_parameter(), cfg.softcap); },
                 final_normed(x));
}

torch::Tensor TransformerImpl::residual(const torch::Tensor& tokens, std::vector<torch::Tensor>* hidden) {
  UNDO_CHECK(tokens.size(1) <= cfg.seq_len, "sequence of ", tokens.size(1), " tokens exceeds model.seq_len ",
             cfg.seq_len);
  auto x = embed_tokens(tokens);
  for (size_t i = 0; i < layers->size(); ++i) {
    x = block(i, x);
    if (hidden) hidden->push_back(x);
  }
  return x;
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens, std::vector<torch::Tensor>* hidden) {
  return output_logits(residual(tokens, hidden));
}

torch::Tensor TransformerImpl::head_input(const torch::Tensor& tokens) {
  return final_normed(residual(tokens, nullptr));
}

torch::Tensor TransformerImpl::forward_loss(const torch::Tensor& tokens, std::shared_ptr<const PositionLoss> loss) {
  if (!head_loss.chunked) {
    auto logits = forward(tokens);
    UNDO_PROFILE_SCOPE("undo::loss");
    return whole_logits_loss(logits, loss);
  }
  const int64_t chunk = head_loss.chunk;
  // Inside the head's runner call, so that a sharded head is present while its chunks run and
  // its gradient goes back to the shards as any unit's does.
  return through(
      head_unit(),
      [this, loss, chunk](const torch::Tensor& h) {
        UNDO_PROFILE_SCOPE("undo::loss");
        return chunked_head_loss(h, head_parameter(), cfg.softcap, loss, chunk);
      },
      head_input(tokens));
}

torch::Tensor TransformerImpl::frozen_head_weight() {
  torch::NoGradGuard no_grad;
  if (!runner) return head_parameter().detach();
  // The runner brings the head in for the call; the copy outlives its release.
  auto none = torch::empty({0}, rope_cos.options());
  return through(head_unit(), [this](const torch::Tensor&) { return head_parameter().detach().clone(); }, none);
}

torch::Tensor TransformerImpl::hidden_after(const torch::Tensor& tokens, int layer) {
  UNDO_CHECK(layer >= 0 && layer < cfg.n_layers, "layer ", layer, " outside the model's ", cfg.n_layers, " blocks");
  auto x = embed_tokens(tokens);
  for (int i = 0; i <= layer; ++i) x = block(size_t(i), x);
  return x;
}

void init_parameter(const ModelConfig& cfg, const std::string& name, const torch::Tensor& p, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  if (p.dim() == 1) {
    p.zero_();  // norm scales (stored as scale - 1) and biases
  } else {
    const double out_std = 0.02 / std::sqrt(2.0 * cfg.n_layers);
    bool out_proj = name.find("attn.wo") != std::string::npos || name.find("mlp.down") != std::string::npos;
    p.normal_(0.0, out_proj ? out_std : 0.02, gen);
  }
}

void TransformerImpl::init_weights(uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : named_parameters()) init_parameter(cfg, item.key(), item.value(), gen);
}

int64_t TransformerImpl::num_params() {
  int64_t n = 0;
  if (runner) {  // the parameters are kept elsewhere (sharded): the module's own tensors are empty
    for (auto& [name, shape] : runner->parameter_shapes()) n += c10::multiply_integers(shape);
    return n;
  }
  for (auto& p : parameters()) n += p.numel();
  return n;
}

double TransformerImpl::forward_flops_per_token() const {
  double d = cfg.d_model, f = cfg.d_ff, T = cfg.seq_len;
  double q = double(cfg.n_heads) * cfg.head_size(), kv = double(cfg.kv_heads()) * cfg.head_size();
  double per_layer = 2 * (2 * d * q + 2 * d * kv) + 2 * (3 * d * f) + 2 * 2 * T * q;  // projections, MLP, attention
  return cfg.n_layers * per_layer + 2 * d * cfg.vocab_size;
}

}  // namespace undo
