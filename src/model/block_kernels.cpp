#include "model/block_kernels.h"

#include <ATen/autocast_mode.h>

#include <limits>

#include "core/error.h"
#include "model/profile_scope.h"
#include "model/row_loops.h"

namespace undo {

torch::Tensor project_concatenated(const torch::Tensor& x, const std::vector<torch::nn::Linear>& projections) {
  std::vector<torch::Tensor> weights, biases;
  for (auto& p : projections) {
    weights.push_back(p->weight);
    if (p->bias.defined()) biases.push_back(p->bias);
  }
  UNDO_CHECK(biases.empty() || biases.size() == projections.size(),
             "project_concatenated: either every projection has a bias or none has");
  // The concatenation's backward hands each weight a slice of one gradient;
  // split's hands the product one gradient made whole in a single copy.
  auto bias = biases.empty() ? torch::Tensor() : torch::cat(biases);
  return torch::nn::functional::linear(x, torch::cat(weights), bias);
}

std::vector<torch::Tensor> project_together(const torch::Tensor& x,
                                            const std::vector<torch::nn::Linear>& projections) {
  std::vector<int64_t> widths;
  for (auto& p : projections) widths.push_back(p->weight.size(0));
  return project_concatenated(x, projections).split_with_sizes(widths, -1);
}

namespace {

// model.activation's name as the one list both paths read.
loops::Activation loop_activation(const std::string& activation) {
  if (activation == "silu") return loops::Activation::silu;
  if (activation == "gelu_tanh") return loops::Activation::gelu_tanh;
  UNDO_CHECK(activation == "gelu", "unknown MLP activation '", activation, "'");
  return loops::Activation::gelu_erf;
}

// out = x rotated by +angle (sign 1) or -angle (sign -1): four kernels writing
// straight into out's halves.
torch::Tensor rotate(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double sign,
                     c10::ScalarType out_type) {
  const int64_t half = x.size(-1) / 2;
  auto out = torch::empty(x.sizes(), x.options().dtype(out_type));
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto o1 = out.narrow(-1, 0, half), o2 = out.narrow(-1, half, half);
  at::mul_out(o1, x1, cos);
  o1.addcmul_(x2, sin, -sign);  // x1 cos - sign x2 sin
  at::mul_out(o2, x2, cos);
  o2.addcmul_(x1, sin, sign);  // x2 cos + sign x1 sin
  return out;
}

// out = x rotated (sign 1) or rotated back (sign -1) by one loop over its rows
// (model/vector_loops.h): x [B, H, T, hd] with its last dimension contiguous
// (q and k are views of the projection's output), tables [T, hd/2] in x's type.
torch::Tensor rotate_rows(const torch::Tensor& x_in, const torch::Tensor& cos, const torch::Tensor& sin, float sign) {
  auto x = x_in.stride(-1) == 1 ? x_in : x_in.contiguous();
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), hd = x.size(3);
  auto out = torch::empty({B, H, T, hd}, x.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t strides[3] = {x.stride(0), x.stride(1), x.stride(2)};
  const auto dt = loop_dtype(x);
  parallel_rows(B * H * T, 2 * hd, [&](int64_t begin, int64_t end) {
    loops::rotary_rows(dt, x.data_ptr(), H, T, strides, cos.data_ptr(), sin.data_ptr(), hd, sign, begin, end,
                       out.data_ptr());
  });
  return out;
}

// The same as one loop each way where it runs on this CPU.
struct RotaryRows : torch::autograd::Function<RotaryRows> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotate_rows(x, cos, sin, 1);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::rotary");
    auto saved = ctx->get_saved_variables();
    return {rotate_rows(grads[0].to(saved[0].scalar_type()), saved[0], saved[1], -1), torch::Tensor(), torch::Tensor()};
  }
};

struct Rotary : torch::autograd::Function<Rotary> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& cos, const torch::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rotate(x, cos, sin, 1, x.scalar_type());
  }
  // A rotation's transpose is the rotation by the opposite angle, in the gradient's type.
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::rotary");
    auto saved = ctx->get_saved_variables();
    return {rotate(grads[0], saved[0], saved[1], -1, grads[0].scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

// RMSNorm with Gemma's (1 + w) scale, in fp32. Forward: one reduction that
// reads x (its 2-norm, no x^2 written) and two products. Backward by hand
// from the saved normalised rows: five passes where autograd's chain of
// pow, mean, rsqrt and products takes about nine.
struct RmsNorm : torch::autograd::Function<RmsNorm> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, double eps) {
    auto xf = x.to(torch::kFloat);
    const double d = double(xf.size(-1));
    auto rstd = at::rsqrt(at::linalg_vector_norm(xf, 2, {-1}, /*keepdim=*/true).square_().div_(d).add_(eps));
    auto xhat = xf * rstd;
    ctx->save_for_backward({xhat, rstd, weight});
    return (xhat * (1 + weight)).to(x.scalar_type());
  }
  // With s = 1 + w and gs = g s: dx = rstd (gs - xhat mean(gs xhat)), dw = sum over rows of g xhat.
  // The output, and so its gradient, has x's type: dx is returned in it.
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::norm");
    auto saved = ctx->get_saved_variables();
    const auto &xhat = saved[0], &rstd = saved[1], &weight = saved[2];
    auto g = grads[0].to(torch::kFloat);
    auto gs = g * (1 + weight);
    auto mean_dot = (gs * xhat).mean(-1, /*keepdim=*/true);
    auto dx = gs.addcmul_(xhat, mean_dot, -1).mul_(rstd);
    auto dw = (g * xhat).flatten(0, -2).sum(0);
    return {dx.to(grads[0].scalar_type()), dw.to(weight.scalar_type()), torch::Tensor()};
  }
};

// RMSNorm as two loops over rows (model/vector_loops.h): the forward reads x
// once for its norm and once for the output; the backward recomputes the
// normalised rows from x (saved anyway: it is the block's input) and its
// per-row rstd instead of keeping them, and sums dw by blocks of rows whose
// partial sums ATen adds up (so that the sum does not depend on the threads).
struct RmsNormRows : torch::autograd::Function<RmsNormRows> {
  static constexpr int64_t kRowsPerPartialSum = 64;

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x_in,
                               const torch::Tensor& weight, double eps, c10::ScalarType out_type) {
    auto x = x_in.contiguous();
    const int64_t d = x.size(-1), rows = x.numel() / d;
    auto out = torch::empty(x.sizes(), x.options().dtype(out_type));
    auto rstd = torch::empty({rows}, x.options().dtype(torch::kFloat));
    parallel_rows(rows, 2 * d, [&](int64_t begin, int64_t end) {
      loops::rms_norm_rows(loop_dtype(x), loop_dtype(out), x.data_ptr(), weight.data_ptr<float>(), eps, d, begin, end,
                           rstd.data_ptr<float>(), out.data_ptr());
    });
    ctx->save_for_backward({x, weight, rstd});
    ctx->saved_data["out_type"] = static_cast<int64_t>(out_type);
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::norm");
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &rstd = saved[2];
    auto g = grads[0].to(static_cast<c10::ScalarType>(ctx->saved_data["out_type"].toInt())).contiguous();
    const int64_t d = x.size(-1), rows = x.numel() / d;
    const int64_t blocks = (rows + kRowsPerPartialSum - 1) / kRowsPerPartialSum;
    auto dx = torch::empty_like(x);
    auto partial = torch::zeros({blocks, d}, x.options().dtype(torch::kFloat));
    parallel_rows(blocks, 3 * d * kRowsPerPartialSum, [&](int64_t first, int64_t last) {
      for (int64_t b = first; b < last; ++b)
        loops::rms_norm_grad_rows(loop_dtype(x), loop_dtype(g), x.data_ptr(), weight.data_ptr<float>(),
                                  rstd.data_ptr<float>(), g.data_ptr(), d, b * kRowsPerPartialSum,
                                  std::min(rows, (b + 1) * kRowsPerPartialSum), dx.data_ptr(),
                                  partial.data_ptr<float>() + b * d);
    });
    return {dx, partial.sum(0), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps, bool for_product) {
  if (row_loops_take({x}) && weight.scalar_type() == torch::kFloat && weight.is_contiguous() &&
      weight.numel() == x.size(-1)) {
    auto out_type = x.scalar_type();
    if (for_product && at::autocast::is_autocast_enabled(at::kCPU) &&
        at::autocast::get_autocast_dtype(at::kCPU) == torch::kBFloat16)
      out_type = torch::kBFloat16;
    return RmsNormRows::apply(x, weight, eps, out_type);
  }
  return RmsNorm::apply(x, weight, eps);
}

torch::Tensor rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin, double scale) {
  UNDO_CHECK(!cos.requires_grad() && !sin.requires_grad(), "rotary: the angles are constants");
  // The tables in x's type ([T, hd/2]: far smaller than x), so that no kernel
  // casts x to fp32 and back around mixed operands.
  auto table = [&](const torch::Tensor& t) { return (scale == 1 ? t : t * scale).to(x.scalar_type()); };
  if (row_loops_take({x}) && x.dim() == 4 && cos.numel() == x.size(2) * (x.size(3) / 2) && x.size(3) % 2 == 0) {
    auto c = table(cos).reshape({x.size(2), x.size(3) / 2}).contiguous();
    auto s = table(sin).reshape({x.size(2), x.size(3) / 2}).contiguous();
    return RotaryRows::apply(x, c, s);
  }
  return Rotary::apply(x, table(cos), table(sin));
}

torch::Tensor hidden_keys(int64_t T, int window, torch::Device device) {
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
  if (window > 0) mask = mask.logical_or(torch::ones_like(mask).tril(-window));  // i - window < j <= i
  return mask;
}

namespace {

// Attention's softmax with its causal mask inside the loop: the hidden keys
// are never read and come out 0 (model/vector_loops.h).
struct CausalSoftmaxRows : torch::autograd::Function<CausalSoftmaxRows> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& scores_in, int64_t window) {
    auto scores = scores_in.contiguous();
    const int64_t T = scores.size(-1), rows = scores.numel() / T;
    auto p = torch::empty_like(scores);
    const auto dt = loop_dtype(scores);
    parallel_rows(rows, T, [&](int64_t begin, int64_t end) {
      loops::causal_softmax_rows(dt, scores.data_ptr(), T, int(window), begin, end, p.data_ptr());
    });
    ctx->save_for_backward({p});
    ctx->saved_data["window"] = window;
    return p;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::attention");
    auto p = ctx->get_saved_variables()[0];
    auto dp = grads[0].to(p.scalar_type()).contiguous();
    const int64_t T = p.size(-1), rows = p.numel() / T;
    const int window = int(ctx->saved_data["window"].toInt());
    auto ds = torch::empty_like(p);
    const auto dt = loop_dtype(p);
    parallel_rows(rows, 2 * T, [&](int64_t begin, int64_t end) {
      loops::causal_softmax_grad_rows(dt, p.data_ptr(), dp.data_ptr(), T, window, begin, end, ds.data_ptr());
    });
    return {ds, torch::Tensor()};
  }
};

// act(gate) * up from the gate and up product [..., 2F] in one loop, and its
// gradient as that product's whole gradient in another: no activation, no
// product and no concatenation of the two halves' gradients in memory.
struct GatedActivationRows : torch::autograd::Function<GatedActivationRows> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gu_in,
                               const std::string& activation) {
    auto gu = gu_in.contiguous();
    const int64_t F = gu.size(-1) / 2, rows = gu.numel() / (2 * F);
    auto sizes = gu.sizes().vec();
    sizes.back() = F;
    auto out = torch::empty(sizes, gu.options());
    const auto dt = loop_dtype(gu);
    const auto act = loop_activation(activation);
    parallel_rows(rows, 8 * F, [&](int64_t begin, int64_t end) {
      loops::gated_activation_rows(dt, act, gu.data_ptr(), F, begin, end, out.data_ptr());
    });
    ctx->save_for_backward({gu});
    ctx->saved_data["activation"] = activation;
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    UNDO_PROFILE_SCOPE("undo::activation");
    auto gu = ctx->get_saved_variables()[0];
    auto dout = grads[0].to(gu.scalar_type()).contiguous();
    const int64_t F = gu.size(-1) / 2, rows = gu.numel() / (2 * F);
    auto dgu = torch::empty_like(gu);
    const auto dt = loop_dtype(gu);
    const auto act = loop_activation(ctx->saved_data["activation"].toStringRef());
    parallel_rows(rows, 16 * F, [&](int64_t begin, int64_t end) {
      loops::gated_activation_grad_rows(dt, act, gu.data_ptr(), dout.data_ptr(), F, begin, end, dgu.data_ptr());
    });
    return {dgu, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_softmax(const torch::Tensor& scores, int window) {
  if (row_loops_take({scores}) && scores.size(-2) == scores.size(-1)) return CausalSoftmaxRows::apply(scores, window);
  // In place: the scores' product's backward needs q and k, not its output.
  auto masked = scores.masked_fill_(hidden_keys(scores.size(-2), window, scores.device()),
                                    -std::numeric_limits<float>::infinity());
  // ATen's softmax of bf16 sums in fp32 and rounds its output once, as the
  // written-out form's fp32 softmax cast back to bf16 does.
  return torch::softmax(masked, -1);
}

torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               double softcap, int window) {
  auto scores = torch::matmul(q, k.transpose(-2, -1));
  if (softcap > 0) scores = torch::tanh(scores / softcap) * softcap;
  return torch::matmul(causal_softmax(scores, window), v);
}

torch::Tensor activation(const torch::Tensor& g, const std::string& name) {
  switch (loop_activation(name)) {
    case loops::Activation::silu:
      return torch::silu(g);
    case loops::Activation::gelu_tanh:
      return torch::gelu(g, "tanh");
    default:
      return torch::gelu(g, "none");
  }
}

torch::Tensor gated_activation(const torch::Tensor& gu, const std::string& name) {
  UNDO_PROFILE_SCOPE("undo::activation");
  UNDO_CHECK(gu.size(-1) % 2 == 0, "gated_activation: the gate and up product has an odd width ", gu.size(-1));
  if (row_loops_take({gu})) return GatedActivationRows::apply(gu, name);
  auto halves = gu.chunk(2, -1);
  return activation(halves[0], name) * halves[1];
}

}  // namespace undo
