#include "model/transformer.h"

#include <cmath>

#include "core/error.h"

namespace undo {

RMSNormImpl::RMSNormImpl(int dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::zeros({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  auto xf = x.to(torch::kFloat);
  auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return (y * (1 + weight)).to(x.scalar_type());
}

namespace {
torch::nn::Linear linear(int in, int out) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)); }

// Rotates pairs (x[..., :h/2], x[..., h/2:]) by the position's angles.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}
}  // namespace

AttentionImpl::AttentionImpl(const ModelConfig& cfg)
    : n_heads(cfg.n_heads), head_dim(cfg.d_model / cfg.n_heads) {
  wq = register_module("wq", linear(cfg.d_model, cfg.d_model));
  wk = register_module("wk", linear(cfg.d_model, cfg.d_model));
  wv = register_module("wv", linear(cfg.d_model, cfg.d_model));
  wo = register_module("wo", linear(cfg.d_model, cfg.d_model));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto B = x.size(0), T = x.size(1);
  auto shape = [&](torch::Tensor t) { return t.view({B, T, n_heads, head_dim}).transpose(1, 2); };
  auto q = apply_rope(shape(wq(x)), cos, sin);
  auto k = apply_rope(shape(wk(x)), cos, sin);
  auto v = shape(wv(x));
  // On GPUs, scaled-dot-product attention: flash kernels, never a [T, T] score
  // matrix in memory. On CPUs the same arithmetic spelled out is faster at our
  // sizes (LibTorch 2.11, 2 cores, bf16, T 128: 17% more tokens/s than its
  // fused CPU kernel; docs/PERFORMANCE.md), so CPUs take the matrix products.
  auto out = x.is_cuda() ? torch::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                                               /*is_causal=*/true)
                         : masked_softmax_attention(q, k, v);
  return wo(out.transpose(1, 2).reshape({B, T, n_heads * head_dim}));
}

torch::Tensor masked_softmax_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto T = q.size(-2);
  auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(q.size(-1))));
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  return torch::matmul(torch::softmax(scores.to(torch::kFloat), -1).to(v.scalar_type()), v);
}

MlpImpl::MlpImpl(int d_model, int d_ff, std::string gelu_) : gelu(gelu_ == "tanh" ? "tanh" : "none") {
  gate = register_module("gate", linear(d_model, d_ff));
  up = register_module("up", linear(d_model, d_ff));
  down = register_module("down", linear(d_ff, d_model));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  return down(torch::gelu(gate(x), gelu) * up(x));
}

BlockImpl::BlockImpl(const ModelConfig& cfg) {
  attn_norm = register_module("attn_norm", RMSNorm(cfg.d_model, cfg.norm_eps));
  attn = register_module("attn", Attention(cfg));
  mlp_norm = register_module("mlp_norm", RMSNorm(cfg.d_model, cfg.norm_eps));
  mlp = register_module("mlp", Mlp(cfg.d_model, cfg.d_ff, cfg.gelu));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  auto h = x + attn(attn_norm(x), cos, sin);
  return h + mlp(mlp_norm(h));
}

TransformerImpl::TransformerImpl(const ModelConfig& c) : cfg(c) {
  UNDO_CHECK(cfg.vocab_size > 0, "model.vocab_size must be resolved before building the model");
  embed = register_module("embed", torch::nn::Embedding(cfg.vocab_size, cfg.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int i = 0; i < cfg.n_layers; ++i) layers->push_back(Block(cfg));
  final_norm = register_module("final_norm", RMSNorm(cfg.d_model, cfg.norm_eps));
  int hd = cfg.d_model / cfg.n_heads;
  auto inv_freq = torch::pow(cfg.rope_theta, -torch::arange(0, hd, 2, torch::kDouble) / hd);
  auto angles = torch::outer(torch::arange(cfg.seq_len, torch::kDouble), inv_freq);
  rope_cos = register_buffer("rope_cos", angles.cos().to(torch::kFloat));
  rope_sin = register_buffer("rope_sin", angles.sin().to(torch::kFloat));
}

torch::Tensor TransformerImpl::through(torch::nn::Module& unit,
                                      const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                                      const torch::Tensor& x) {
  return runner ? runner->run(unit, fn, x) : fn(x);
}

torch::Tensor TransformerImpl::embed_tokens(const torch::Tensor& tokens) {
  // Gemma scales the tied embedding by sqrt(d) on the way in.
  const double scale = std::sqrt(double(cfg.d_model));
  return through(*embed, [this, scale](const torch::Tensor& t) { return embed(t) * scale; }, tokens);
}

torch::Tensor TransformerImpl::block(size_t i, const torch::Tensor& x) {
  auto b = layers[i]->as<Block>();
  auto T = x.size(1);
  auto cos = rope_cos.narrow(0, 0, T), sin = rope_sin.narrow(0, 0, T);
  return through(*b, [b, cos, sin](const torch::Tensor& h) { return b->forward(h, cos, sin); }, x);
}

torch::Tensor TransformerImpl::output_logits(const torch::Tensor& x) {
  auto normed = through(*final_norm, [this](const torch::Tensor& h) { return final_norm(h); }, x);
  return through(*embed,
                 [this](const torch::Tensor& h) {
                   auto logits = torch::matmul(h, embed->weight.t()).to(torch::kFloat);
                   if (cfg.softcap > 0) logits = torch::tanh(logits / cfg.softcap) * cfg.softcap;
                   return logits;
                 },
                 normed);
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& tokens, std::vector<torch::Tensor>* hidden) {
  UNDO_CHECK(tokens.size(1) <= cfg.seq_len, "sequence of ", tokens.size(1), " tokens exceeds model.seq_len ",
             cfg.seq_len);
  auto x = embed_tokens(tokens);
  for (size_t i = 0; i < layers->size(); ++i) {
    x = block(i, x);
    if (hidden) hidden->push_back(x);
  }
  return output_logits(x);
}

torch::Tensor TransformerImpl::hidden_after(const torch::Tensor& tokens, int layer) {
  UNDO_CHECK(layer >= 0 && layer < cfg.n_layers, "layer ", layer, " outside the model's ", cfg.n_layers, " blocks");
  auto x = embed_tokens(tokens);
  for (int i = 0; i <= layer; ++i) x = block(size_t(i), x);
  return x;
}

void TransformerImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  double out_std = 0.02 / std::sqrt(2.0 * cfg.n_layers);
  for (auto& item : named_parameters()) {
    auto& name = item.key();
    auto& p = item.value();
    if (p.dim() == 1) {
      p.zero_();
    } else {
      bool out_proj = name.find("attn.wo") != std::string::npos || name.find("mlp.down") != std::string::npos;
      p.normal_(0.0, out_proj ? out_std : 0.02, gen);
    }
  }
}

int64_t TransformerImpl::num_params() {
  int64_t n = 0;
  for (auto& p : parameters()) n += p.numel();
  return n;
}

double TransformerImpl::forward_flops_per_token() const {
  double d = cfg.d_model, f = cfg.d_ff, T = cfg.seq_len;
  double per_layer = 2 * (4 * d * d) + 2 * (3 * d * f) + 2 * 2 * T * d;  // projections, MLP, attention
  return cfg.n_layers * per_layer + 2 * d * cfg.vocab_size;
}

}  // namespace undo
