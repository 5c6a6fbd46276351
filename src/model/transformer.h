// The model definition, apart from how it is trained or parallelised: a
// decoder-only transformer of the Llama / Gemma kind. The defaults are undo's
// own Gemma-style demo model; model.* keys select the rest of the family
// (grouped-query attention, SiLU or GELU gates, untied heads, Qwen2's biases,
// Gemma-2's post-norms, soft-caps and sliding windows, scaled rotary
// frequencies), which is what Hugging Face Llama, Qwen2, Gemma and Gemma-2
// checkpoints need (model/hf_checkpoint.h maps their tensors onto these).
#pragma once
#include <torch/torch.h>

#include <memory>

#include "core/config.h"
#include "model/head_loss.h"
#include "model/unit_runner.h"

namespace undo {

// RMSNorm with Gemma's (1 + w) scale: w starts at 0, so the UNDO noise rule
// (vectors shrink by 1-alpha) pulls the scale towards 1, not towards 0.
// `feeds_product`: its output is only ever a matrix product's input (a
// block's pre-norms), so that under autocast the fused norm may return it in
// the product's type, which is what autocast would cast it to.
struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int dim, double eps, bool feeds_product = false);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
  bool feeds_product;
  bool fused = true;  // one autograd node (model/block_kernels.h; train.fused_blocks)
};
TORCH_MODULE(RMSNorm);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& cfg, int layer);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  torch::nn::Linear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr};
  int n_heads, n_kv_heads, head_dim;
  double scale, softcap;
  int window;  // 0: this layer attends to every earlier position
  bool fused = true;  // model/block_kernels.h, or the written-out reference path (train.fused_blocks)
};
TORCH_MODULE(Attention);

// Causal attention of q [B, H, T, hd] over k, v [B, H, T, hd] written out:
// scores scaled by `scale` (0: 1/sqrt(hd)), soft-capped (softcap > 0), masked to the causal
// window (window > 0: a query reaches back `window` positions, itself
// included), softmax in fp32. The written-out reference path (train.fused_blocks
// false; model/block_kernels.h's causal_attention is the fused one), on CPUs
// and on GPUs where scaled_dot_product_attention has no soft-cap; tested equal to it.
torch::Tensor masked_softmax_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                       double scale = 0, double softcap = 0, int window = 0);

// A gated MLP: down(act(gate(x)) * up(x)); GeGLU or SwiGLU by activation.
struct MlpImpl : torch::nn::Module {
  MlpImpl(int d_model, int d_ff, const std::string& activation);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate{nullptr}, up{nullptr}, down{nullptr};
  std::string activation;  // gelu | gelu_tanh | silu
  bool fused = true;  // gate and up as one product (model/block_kernels.h; train.fused_blocks)
};
TORCH_MODULE(Mlp);

struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& cfg, int layer);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
  RMSNorm attn_norm{nullptr}, mlp_norm{nullptr};
  RMSNorm post_attn_norm{nullptr}, post_mlp_norm{nullptr};  // model.post_norms only
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

// How forward_loss computes a loss from the output head: chunk by chunk from
// the final hidden state (model/head_loss.h), or, as the reference path, on
// forward's logits made whole. Not part of the model (it changes no result
// beyond rounding): a run sets it from train.fused_loss and train.loss_chunk.
struct HeadLossOptions {
  bool chunked = true;
  int64_t chunk = 0;  // rows per chunk; 0: default_chunk_rows (model/head_loss.h)
};

struct TransformerImpl : torch::nn::Module {
  // storage = false: every parameter has its shape but no memory (model/
  // device.h's free_storage), each part's freed as soon as it is built, so a
  // model larger than one rank's memory can be laid out for a runner that
  // keeps its parameters elsewhere (zero 3 fills its shards from a file).
  explicit TransformerImpl(const ModelConfig& cfg, bool storage = true);
  // tokens [B, T] (int64) -> logits [B, T, vocab] in float32. When `hidden`
  // is given, it receives the residual stream after each block (for RMU).
  torch::Tensor forward(const torch::Tensor& tokens, std::vector<torch::Tensor>* hidden = nullptr);
  // The residual stream after block `layer` (0-based), without computing the rest.
  torch::Tensor hidden_after(const torch::Tensor& tokens, int layer);
  // The final norm and the output projection applied to a residual stream [B, T, d]: the logits of
  // forward for the last block's, the "logit lens" for an earlier one's (RepNoise).
  torch::Tensor logits_from_residual(const torch::Tensor& residual) { return output_logits(residual); }
  // tokens [B, T] -> the mean over every position of `loss` on the logits,
  // as head_loss says: the logits never whole when chunked.
  torch::Tensor forward_loss(const torch::Tensor& tokens, std::shared_ptr<const PositionLoss> loss);
  // What the output head reads: the final norm of the last block's residual stream [B, T, d].
  torch::Tensor head_input(const torch::Tensor& tokens);
  // The output projection's weight [V, d] whole and without gradient, for a
  // frozen model's logits made chunk by chunk outside its forward (an online
  // teacher's): the parameter itself, or a copy gathered by the runner.
  torch::Tensor frozen_head_weight();
  // Normal(0, 0.02) matrices, output projections scaled by 1/sqrt(2 n_layers), norm scales 0.
  void init_weights(uint64_t seed);
  int64_t num_params();
  // Matrix-multiply FLOPs of a forward pass per token (for GFLOP/s figures).
  double forward_flops_per_token() const;

  ModelConfig cfg;
  // Null: every part runs on its own parameters. Set by a parallelism that
  // keeps them elsewhere (ZeRO-3); the parts are the embedding (used twice
  // when tied: in and out), each block, the final norm and an untied head.
  std::shared_ptr<UnitRunner> runner;
  torch::nn::Embedding embed{nullptr};
  torch::nn::ModuleList layers;
  RMSNorm final_norm{nullptr};
  torch::nn::Linear lm_head{nullptr};  // untied models only
  torch::Tensor rope_cos, rope_sin;  // [seq_len, head_dim/2], buffers, not parameters
  HeadLossOptions head_loss;
  // Every block's fused kernels (model/block_kernels.h) on or off, the
  // written-out reference path beside them. Not part of the model, like head_loss.
  void set_fused_blocks(bool on);

 private:
  // The pieces of forward, each through the runner.
  torch::Tensor embed_tokens(const torch::Tensor& tokens);
  torch::Tensor block(size_t i, const torch::Tensor& x);
  torch::Tensor output_logits(const torch::Tensor& x);
  torch::Tensor final_normed(const torch::Tensor& x);
  torch::Tensor residual(const torch::Tensor& tokens, std::vector<torch::Tensor>* hidden);
  // The output projection: its module (the embedding when tied) and weight [V, d].
  torch::nn::Module& head_unit();
  torch::Tensor head_parameter();
  torch::Tensor through(torch::nn::Module& unit, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                        const torch::Tensor& x);
};
TORCH_MODULE(Transformer);

// One parameter's initial value as init_weights draws it (init_weights draws
// them in the model's order from one generator; a sharded model draws them
// the same way, one whole parameter at a time).
void init_parameter(const ModelConfig& cfg, const std::string& name, const torch::Tensor& p, at::Generator& gen);

}  // namespace undo
