#include "model/head_loss.h"

#include <ATen/autocast_mode.h>

#include <algorithm>

#include "core/error.h"

namespace undo {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The dtype the head's products run in: autocast's where it is on (as it
// would cast forward's matmul), else the weight's own.
at::ScalarType product_dtype(const torch::Tensor& weight) {
  const auto dev = weight.is_cuda() ? at::kCUDA : at::kCPU;
  return at::autocast::is_autocast_enabled(dev) ? at::autocast::get_autocast_dtype(dev) : weight.scalar_type();
}

torch::Tensor capped(const torch::Tensor& z, double softcap) {
  return softcap > 0 ? torch::tanh(z / softcap) * softcap : z;
}

// Whether a call builds a graph (forward computes gradients only then).
bool wants_grad(std::initializer_list<torch::Tensor> inputs) {
  if (!torch::GradMode::is_enabled()) return false;
  return std::any_of(inputs.begin(), inputs.end(), [](const torch::Tensor& t) { return t.requires_grad(); });
}

// The gradients a forward made are kept as plain values, not saved variables,
// so that the backward takes them and scales them in place: no second copy of
// dW (the size of the head) at the peak. A second backward through the same
// node finds them gone and says so.
void keep_gradient(AutogradContext* ctx, const std::string& key, const torch::Tensor& grad) {
  ctx->saved_data[key] = grad;
}

// The kept gradient times the incoming one, in the dtype of the input it belongs to.
torch::Tensor take_gradient(AutogradContext* ctx, const std::string& key, const torch::Tensor& scale,
                            torch::ScalarType dtype) {
  auto it = ctx->saved_data.find(key);
  UNDO_CHECK(it != ctx->saved_data.end() && it->second.isTensor(),
             "a head loss was differentiated twice (its gradients are made once, in its forward)");
  auto grad = it->second.toTensor();
  ctx->saved_data.erase(it);
  return grad.mul_(scale).to(dtype);
}

struct ChunkedHeadLoss : torch::autograd::Function<ChunkedHeadLoss> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& weight,
                               double softcap, const std::shared_ptr<const PositionLoss>& loss, int64_t chunk,
                               bool grad) {
    const int64_t d = h.size(-1), rows = h.numel() / d;
    const auto dtype = product_dtype(weight);
    auto hs = h.reshape({rows, d}).to(dtype), w = weight.to(dtype);  // cast once, not per chunk
    torch::Tensor dh, dw;
    if (grad) {
      dh = torch::empty({rows, d}, h.options().dtype(torch::kFloat));
      dw = torch::zeros(weight.sizes(), weight.options().dtype(torch::kFloat));
    }
    auto total = torch::zeros({}, h.options().dtype(torch::kFloat));
    for (int64_t begin = 0; begin < rows; begin += chunk) {
      const int64_t n = std::min(chunk, rows - begin);
      auto hc = hs.narrow(0, begin, n);
      torch::Tensor dz;
      total.add_(loss->sum_of_products(begin, torch::matmul(hc, w.t()), softcap, grad ? &dz : nullptr));
      if (!grad) continue;
      dh.narrow(0, begin, n).copy_(torch::matmul(dz, w));
      dw.add_(torch::matmul(dz.t(), hc));
    }
    if (grad) {
      keep_gradient(ctx, "dh", dh.view(h.sizes()));
      keep_gradient(ctx, "dw", dw);
      ctx->saved_data["rows"] = rows;
      ctx->saved_data["h_dtype"] = static_cast<int64_t>(h.scalar_type());
      ctx->saved_data["w_dtype"] = static_cast<int64_t>(weight.scalar_type());
    }
    return total / double(rows);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const double rows = double(ctx->saved_data["rows"].toInt());
    auto scale = grad_out[0].to(torch::kFloat) / rows;  // a tensor: no host synchronisation
    auto h_dtype = static_cast<torch::ScalarType>(ctx->saved_data["h_dtype"].toInt());
    auto w_dtype = static_cast<torch::ScalarType>(ctx->saved_data["w_dtype"].toInt());
    return {take_gradient(ctx, "dh", scale, h_dtype), take_gradient(ctx, "dw", scale, w_dtype), {}, {}, {}, {}};
  }
};

struct WholeLogitsLoss : torch::autograd::Function<WholeLogitsLoss> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits,
                               const std::shared_ptr<const PositionLoss>& loss, bool grad) {
    const int64_t V = logits.size(-1), rows = logits.numel() / V;
    auto x = logits.reshape({rows, V}).to(torch::kFloat);
    torch::Tensor dx;
    auto total = loss->sum(0, x, grad ? &dx : nullptr);
    if (grad) {
      keep_gradient(ctx, "dx", dx.view(logits.sizes()));
      ctx->saved_data["rows"] = rows;
      ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    }
    return total / double(rows);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto scale = grad_out[0].to(torch::kFloat) / double(ctx->saved_data["rows"].toInt());
    auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {take_gradient(ctx, "dx", scale, dtype), {}, {}};
  }
};

}  // namespace

torch::Tensor PositionLoss::sum_of_products(int64_t begin, const torch::Tensor& z, double softcap,
                                            torch::Tensor* grad) const {
  auto x = capped(z.to(torch::kFloat), softcap);
  torch::Tensor dx;
  auto total = sum(begin, x, grad ? &dx : nullptr);
  if (!grad) return total;
  if (softcap > 0) dx.mul_(1 - (x / softcap).square());  // d/dz of softcap * tanh(z / softcap)
  x = torch::Tensor();  // not needed any more: a chunk holds two [n, V] buffers at most
  *grad = dx.to(z.scalar_type());
  return total;
}

torch::Tensor head_logits(const torch::Tensor& h, const torch::Tensor& weight, double softcap) {
  return capped(torch::matmul(h, weight.t()).to(torch::kFloat), softcap);
}

int64_t default_chunk_rows(int64_t vocab) {
  constexpr int64_t kChunkBytes = int64_t(32) << 20, kMinRows = 512;
  return std::max<int64_t>(kMinRows, kChunkBytes / (int64_t(sizeof(float)) * std::max<int64_t>(vocab, 1)));
}

torch::Tensor chunked_head_loss(const torch::Tensor& h, const torch::Tensor& weight, double softcap,
                                std::shared_ptr<const PositionLoss> loss, int64_t chunk) {
  UNDO_CHECK(weight.dim() == 2 && h.size(-1) == weight.size(1), "head weight ", weight.sizes(),
             " does not take hidden states ", h.sizes());
  UNDO_CHECK(chunk >= 0, "negative loss chunk ", chunk);
  if (chunk == 0) chunk = default_chunk_rows(weight.size(0));
  return ChunkedHeadLoss::apply(h, weight, softcap, loss, chunk, wants_grad({h, weight}));
}

torch::Tensor whole_logits_loss(const torch::Tensor& logits, std::shared_ptr<const PositionLoss> loss) {
  return WholeLogitsLoss::apply(logits, loss, wants_grad({logits}));
}

}  // namespace undo
