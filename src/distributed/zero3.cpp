#include "distributed/zero3.h"

#include <algorithm>

#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>

#include "core/error.h"
#include "model/device.h"
#include "model/precision.h"

namespace undo {

// A unit call awaiting its backward. Kept graph: `y` is the unit's output in
// its own graph and `edges` where that graph's gradients for the input and
// the parameters arrive (held here, so a parameter whose data changed dtype
// since cannot lose its place). Recompute: `fn` and `x` run the call again.
// `fn` owns what it captures (UnitRunner's contract), so it outlives the
// forward that made it.
struct Zero3::Call {
  size_t unit = 0;
  std::function<torch::Tensor(const torch::Tensor&)> fn;
  bool autocast = false, cuda = false;
  bool x_needs_grad = false;
  torch::Tensor x, y;
  torch::autograd::edge_list edges;  // the input's first where it needs a gradient, then the parameters'
};

namespace {

// The autograd node of one unit call: its inputs are the unit's input and its
// shard; backward gathers, runs the unit's own backward and reduce-scatters
// (Zero3::backward_of). A node (not a torch::autograd::Function) so that it
// can own the call.
struct UnitBackward : torch::autograd::Node {
  UnitBackward(Zero3* owner, Zero3::Call call) : owner_(owner), call_(std::move(call)) {}
  std::string name() const override { return "Zero3UnitBackward"; }
  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    torch::Tensor grad_x;
    torch::Tensor grad_shard = owner_->backward_of(call_, grads[0], &grad_x);
    return {grad_x, grad_shard};
  }
  void release_variables() override { call_.x = call_.y = torch::Tensor(), call_.edges.clear(); }

  Zero3* owner_;
  Zero3::Call call_;
};

// Autocast keeps bf16 copies of leaf weights for the whole autocast region;
// a gathered unit's copies would keep every unit alive. Off while a unit runs.
struct NoAutocastCache {
  NoAutocastCache() : was_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~NoAutocastCache() { at::autocast::set_autocast_cache_enabled(was_); }
  bool was_;
};

}  // namespace

Zero3::Zero3(Transformer model, std::shared_ptr<Communicator> comm, bool trained, bool recompute)
    : model_(model.get()), comm_(std::move(comm)), recompute_(recompute) {
  torch::NoGradGuard no_grad;
  if (comm_) comm_->broadcast(model_->parameters(), 0);  // every rank cuts its shard from rank 0's weights
  lay_out(trained, model_->parameters()[0].device());
  for (auto& u : units_)
    u.shard.detach().copy_(shard_of_parts(u, part_flats(u, u.params, u.shard.options().requires_grad(false))));
  start();
}

Zero3::Zero3(Transformer model, std::shared_ptr<Communicator> comm, bool trained, torch::Device device)
    : model_(model.get()), comm_(std::move(comm)) {
  lay_out(trained, device);
  start();
}

void Zero3::lay_out(bool trained, torch::Device device) {
  if (comm_) world_ = comm_->world(), rank_ = comm_->rank();
  std::vector<std::pair<std::string, torch::nn::Module*>> parts = {{"embed", model_->embed.ptr().get()}};
  for (size_t i = 0; i < model_->layers->size(); ++i)
    parts.emplace_back("layers." + std::to_string(i), model_->layers[i].get());
  parts.emplace_back("final_norm", model_->final_norm.ptr().get());
  if (model_->lm_head) parts.emplace_back("lm_head", model_->lm_head.ptr().get());
  const auto options = torch::TensorOptions().dtype(torch::kFloat).device(device);
  for (auto& [name, module] : parts) {
    Unit u;
    u.name = name;
    u.module = module;
    u.first_name = names_.size();
    for (auto& p : module->named_parameters()) {
      names_.push_back(name + "." + p.key());
      // The embedding's matrix is looked up, not multiplied (and a tied head's
      // product is the last forward and first backward: autocast's copy of it is short-lived).
      const int part = p.value().dim() == 2 && module != model_->embed.ptr().get() ? kMatrices : kRest;
      u.params.push_back(p.value());
      u.trains.push_back(trained && p.value().requires_grad());
      u.shapes.push_back(p.value().sizes().vec());
      u.part.push_back(part);
      u.offsets.push_back(u.parts[part].numel);
      u.numels.push_back(p.value().numel());
      u.parts[part].numel += p.value().numel();
      u.numel += p.value().numel();
    }
    UNDO_INPUT_CHECK(u.numel >= world_, "dist.zero = 3: unit '", name, "' has ", u.numel,
                     " parameters, fewer than the ", world_, " ranks to shard it over");
    for (int part : {kMatrices, kRest}) {
      Part& pt = u.parts[part];
      pt.shard_numel = (pt.numel + world_ - 1) / world_;
      pt.at = u.shard_numel;
      u.shard_numel += pt.shard_numel;
    }
    // A unit none of whose parameters trains (RMU trains one matrix a block) has a shard without gradient.
    const bool any = std::find(u.trains.begin(), u.trains.end(), true) != u.trains.end();
    u.shard = torch::zeros({u.shard_numel}, options).requires_grad_(any);
    u.matrices = torch::empty({u.parts[kMatrices].shard_numel * world_}, options);
    u.matrices_bf16 = torch::empty({u.parts[kMatrices].shard_numel * world_}, options.dtype(kComputeDtype));
    u.rest = torch::empty({u.parts[kRest].shard_numel * world_}, options);
    free_gathered(u);
    index_[module] = units_.size();
    units_.push_back(std::move(u));
  }
}

void Zero3::start() {
  // Checkpoints and the readers above index parameters in the model's order.
  size_t i = 0;
  for (auto& p : model_->named_parameters())
    UNDO_CHECK(i < names_.size() && names_[i++] == p.key(), "zero3: the units do not list the model's parameters in "
               "its order at ", p.key());
  for (auto& u : units_) release(u);
  peak_gathered_bytes_ = 0;  // the count starts here (a model sharded from whole was whole until now)
  const size_t blocks = model_->layers->size(), norm = blocks + 1;
  for (size_t k = 0; k <= norm; ++k) forward_order_.push_back(k);
  forward_order_.push_back(model_->lm_head ? norm + 1 : 0);
  backward_order_.assign(forward_order_.rbegin(), forward_order_.rend());
}

Zero3::~Zero3() {
  try {
    drop_prefetch();  // a gather under way holds tensors the backend still writes
  } catch (...) {
  }
}

Zero3::Unit& Zero3::unit_of(torch::nn::Module& module) {
  auto it = index_.find(&module);
  UNDO_CHECK(it != index_.end(), "zero3: a part of the model that was not sharded");
  return units_[it->second];
}

std::optional<size_t> Zero3::next_unit(size_t k, Pass pass) {
  if (pass == Pass::other) return std::nullopt;
  const auto& order = pass == Pass::forward ? forward_order_ : backward_order_;
  size_t& at = pass == Pass::forward ? forward_at_ : backward_at_;
  // The call is where the pass was expected to be; if not (a pass cut short,
  // as by an evaluation's hidden states), a new pass starts at k's first place.
  if (at >= order.size() || order[at] != k)
    at = size_t(std::find(order.begin(), order.end(), k) - order.begin());
  if (++at >= order.size()) {
    at = 0;
    return std::nullopt;  // the pass ends
  }
  return order[at];
}

void Zero3::drop_prefetch() {
  if (!prefetch_) return;
  for (auto& pending : prefetch_->pending) pending.wait();  // every rank started it: every rank finishes it
  Unit& v = units_[prefetch_->unit];
  prefetch_.reset();
  if (!v.gathered) free_gathered(v);
  count_gathered();
}

void Zero3::count_gathered() {
  gathered_bytes_ = 0;
  for (auto& w : units_)
    for (auto* t : {&w.matrices, &w.matrices_bf16, &w.rest}) gathered_bytes_ += storage_bytes(*t);
  peak_gathered_bytes_ = std::max(peak_gathered_bytes_, gathered_bytes_);
}

torch::Tensor& Zero3::buffer(Unit& u, int part, bool cast) {
  return part == kRest ? u.rest : cast ? u.matrices_bf16 : u.matrices;
}

std::vector<Communicator::Pending> Zero3::start_gather(Unit& u, bool cast) {
  std::vector<Communicator::Pending> pending;
  for (int part : {kMatrices, kRest}) {
    const Part& pt = u.parts[part];
    if (pt.numel == 0) continue;
    torch::Tensor& into = buffer(u, part, cast);
    allocate_storage(into);
    // Each rank rounds its own shard to bf16 (as autocast would round the weight): half the bytes move.
    auto mine = u.shard.detach().narrow(0, pt.at, pt.shard_numel).to(into.scalar_type());
    if (comm_) pending.push_back(comm_->all_gather_async(into, mine, "all-gather of " + u.name));
    else into.copy_(mine);
  }
  return pending;
}

void Zero3::gather(Unit& u, Pass pass, bool cast) {
  torch::NoGradGuard no_grad;
  const size_t k = size_t(&u - units_.data());
  if (prefetch_ && prefetch_->unit == k && prefetch_->cast == cast) {
    for (auto& pending : prefetch_->pending) pending.wait();
    prefetch_.reset();
    ++prefetch_hits_;
  } else {
    drop_prefetch();  // a wrong guess (a pass that ended early) costs one gather, nothing else
    for (auto& pending : start_gather(u, cast)) pending.wait();
  }
  u.gathered = true;
  for (size_t i = 0; i < u.params.size(); ++i)
    u.params[i].set_data(buffer(u, u.part[i], cast).narrow(0, u.offsets[i], u.numels[i]).view(u.shapes[i]));
  if (auto next = next_unit(k, pass); next && comm_ && !units_[*next].gathered)
    prefetch_ = Prefetch{*next, cast, start_gather(units_[*next], cast)};
  count_gathered();
}

void Zero3::release(Unit& u) {
  // Should autograd run one backward of a unit (from another forward of it,
  // as GradDiff's two) inside the kept graph of another, the outer one would
  // still read the storage: it frees it when it is done. (Autograd's ready
  // queue runs an inner graph's work first, so this does not happen today.)
  if (u.backward_depth > 0) return;
  if (prefetch_ && &units_[prefetch_->unit] == &u) drop_prefetch();
  // Empty in the dtype each tensor has now: a dtype change would detach a
  // parameter from the gradient accumulator a kept graph holds.
  // On the shards' device (a model laid out without storage was built on the CPU).
  for (auto& p : u.params)
    if (p.numel() > 0) p.set_data(torch::empty({0}, p.options().device(u.shard.device()).requires_grad(false)));
  free_gathered(u);
  u.gathered = false;
  count_gathered();
}

torch::Tensor Zero3::run(torch::nn::Module& module, const std::function<torch::Tensor(const torch::Tensor&)>& fn,
                         const torch::Tensor& x) {
  Unit& u = unit_of(module);
  NoAutocastCache no_cache;
  const bool cuda = u.shard.is_cuda();
  const bool autocast = at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
  const bool needs_graph =
      torch::GradMode::is_enabled() && (u.shard.requires_grad() || (x.defined() && x.requires_grad()));
  Call call;
  call.unit = index_.at(&module), call.fn = fn, call.autocast = autocast, call.cuda = cuda;
  call.x_needs_grad = x.defined() && x.requires_grad();
  torch::Tensor y;
  gather(u, Pass::forward, autocast);
  if (!needs_graph || recompute_) {
    torch::NoGradGuard no_grad;  // the graph of a unit call is the one node below
    y = fn(x);
    release(u);
    if (!needs_graph) return y;
    call.x = x.detach();
  } else {
    // The unit's own graph, from a leaf copy of its input to its output; the
    // storage its weights' views point into goes with release().
    call.x = x.detach();
    if (call.x_needs_grad) call.x.requires_grad_(true);
    {
      torch::AutoGradMode grad_on(true);
      call.y = fn(call.x);
    }
    UNDO_CHECK(call.y.requires_grad(), "zero3: unit '", u.name, "' has no parameter that takes a gradient");
    if (call.x_needs_grad) call.edges.push_back(torch::autograd::impl::gradient_edge(call.x));
    for (size_t i = 0; i < u.params.size(); ++i)
      if (u.trains[i]) call.edges.push_back(torch::autograd::impl::gradient_edge(u.params[i]));
    release(u);
    y = call.y.detach();
  }
  auto node = std::shared_ptr<UnitBackward>(new UnitBackward(this, std::move(call)), torch::autograd::deleteNode);
  node->set_next_edges(torch::autograd::collect_next_edges(x, u.shard));
  torch::autograd::set_history(y, node);
  return y;
}

std::vector<torch::Tensor> Zero3::kept_graph_grads(Call& call, const torch::Tensor& grad_out) {
  UNDO_CHECK(call.y.defined(), "zero3: unit '", units_[call.unit].name, "' is run backward twice");
  auto grads = torch::autograd::Engine::get_default_engine().execute(
      {torch::autograd::impl::gradient_edge(call.y)}, {grad_out}, /*keep_graph=*/false, /*create_graph=*/false,
      /*accumulate_grad=*/false, call.edges);
  call.x = call.y = torch::Tensor(), call.edges.clear();
  return grads;
}

std::vector<torch::Tensor> Zero3::recomputed_grads(Call& call, const torch::Tensor& grad_out) {
  torch::Tensor x_in = call.x.detach();
  if (call.x_needs_grad) x_in.requires_grad_(true);
  std::vector<torch::Tensor> inputs;
  if (call.x_needs_grad) inputs.push_back(x_in);
  const Unit& u = units_[call.unit];
  for (size_t i = 0; i < u.params.size(); ++i)
    if (u.trains[i]) inputs.push_back(u.params[i]);
  torch::AutoGradMode grad_on(true);
  AutocastGuard autocast(call.autocast, call.cuda);
  auto y = call.fn(x_in);
  return torch::autograd::grad({y}, inputs, {grad_out}, /*retain_graph=*/false, /*create_graph=*/false,
                               /*allow_unused=*/true);
}

torch::Tensor Zero3::backward_of(Call& call, const torch::Tensor& grad_out, torch::Tensor* grad_x) {
  Unit& u = units_[call.unit];
  // Every rank must reduce-scatter here (a unit that trains): a unit whose output
  // the loss did not use on this rank would leave the others waiting, so that is an error.
  UNDO_CHECK(grad_out.defined(), "zero3: unit '", u.name, "' ran forward but its output took no gradient");
  NoAutocastCache no_cache;
  gather(u, Pass::backward, call.autocast);  // into the storage the kept graph points at
  ++u.backward_depth;
  auto grads = recompute_ ? recomputed_grads(call, grad_out) : kept_graph_grads(call, grad_out);
  --u.backward_depth;
  size_t next = 0;
  if (call.x_needs_grad) *grad_x = grads[next++];
  if (!u.shard.requires_grad()) {  // a frozen unit passes the gradient on: every rank alike, no collective
    release(u);
    return torch::Tensor();
  }
  // The unit's gradient (fp32, whatever the dtype the weights ran in; 0 for a
  // frozen parameter), laid out as every rank's shard one after another,
  // summed over ranks into this rank's shard and averaged.
  torch::Tensor flat;
  {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> per_param(u.params.size());  // undefined: frozen, or unused by the loss
    for (size_t i = 0; i < u.params.size(); ++i)
      if (u.trains[i]) per_param[i] = grads[next++];
    auto wholes = part_flats(u, per_param, u.shard.options().requires_grad(false));
    per_param.clear(), grads.clear();  // the unit and autograd's gradients go before the buffer the collective takes comes
    release(u);
    flat = torch::empty({world_, u.shard_numel}, wholes[0].options());
    for (int part : {kMatrices, kRest}) {
      const Part& pt = u.parts[part];
      flat.narrow(1, pt.at, pt.shard_numel).copy_(wholes[part].view({world_, pt.shard_numel}));
    }
  }
  flat = flat.reshape({-1});
  if (!comm_) return flat;
  auto shard_grad = torch::empty({u.shard_numel}, flat.options());
  comm_->reduce_scatter_sum(shard_grad, flat, "reduce-scatter of " + u.name + "'s gradient");
  return shard_grad.div_(world_);
}

std::vector<std::pair<std::string, torch::Tensor>> Zero3::shards() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& u : units_) out.emplace_back("zero3." + u.name, u.shard);
  return out;
}

std::vector<torch::Tensor> Zero3::gathered_parts(Unit& u, const torch::Tensor& shard) {
  auto every = torch::empty({world_ * u.shard_numel}, shard.options().requires_grad(false));
  if (comm_) comm_->all_gather(every, shard.detach().contiguous(), "all-gather of " + u.name);
  else every.copy_(shard.detach());
  auto by_rank = every.view({world_, u.shard_numel});
  std::vector<torch::Tensor> wholes;
  for (int part : {kMatrices, kRest}) {
    const Part& pt = u.parts[part];
    wholes.push_back(by_rank.narrow(1, pt.at, pt.shard_numel).reshape({-1}));
  }
  return wholes;
}

std::vector<torch::Tensor> Zero3::part_flats(const Unit& u, const std::vector<torch::Tensor>& per_param,
                                             const torch::TensorOptions& options) const {
  std::vector<torch::Tensor> wholes;
  for (int part : {kMatrices, kRest}) wholes.push_back(torch::zeros({u.parts[part].shard_numel * world_}, options));
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < u.params.size(); ++i)
    if (per_param[i].defined()) wholes[u.part[i]].narrow(0, u.offsets[i], u.numels[i]).copy_(per_param[i].reshape({-1}));
  return wholes;
}

void Zero3::free_gathered(Unit& u) {
  for (auto* t : {&u.matrices, &u.matrices_bf16, &u.rest}) free_storage(*t);
}

torch::Tensor Zero3::shard_of_parts(const Unit& u, const std::vector<torch::Tensor>& wholes) const {
  std::vector<torch::Tensor> mine;
  for (int part : {kMatrices, kRest}) {
    const Part& pt = u.parts[part];
    mine.push_back(wholes[part].narrow(0, rank_ * pt.shard_numel, pt.shard_numel));
  }
  return torch::cat(mine);
}

std::vector<std::pair<std::string, std::vector<int64_t>>> Zero3::parameter_shapes() const {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (size_t i = 0; i < names_.size(); ++i) out.emplace_back(names_[i], shape_of(i));
  return out;
}

void Zero3::for_each_whole(const std::vector<torch::Tensor>* per_unit,
                           const std::function<void(size_t, const torch::Tensor&)>& fn) {
  UNDO_CHECK(!per_unit || per_unit->size() == units_.size(), "zero3: ", per_unit->size(), " shards for ",
             units_.size(), " units");
  drop_prefetch();
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < units_.size(); ++k) {
    auto& u = units_[k];
    // The weights into the unit's own buffers (counted as gathered); anything
    // else into a temporary of the same size.
    std::vector<torch::Tensor> wholes;
    if (per_unit) {
      wholes = gathered_parts(u, (*per_unit)[k]);
    } else {
      gather(u);
      wholes = {u.matrices, u.rest};
    }
    for (size_t i = 0; i < u.params.size(); ++i)
      fn(u.first_name + i, wholes[u.part[i]].narrow(0, u.offsets[i], u.numels[i]).view(u.shapes[i]));
    if (!per_unit) release(u);
  }
}

std::optional<Zero3::Slice> Zero3::slice_of(const Unit& u, size_t i) const {
  // This rank's shard of a part is elements [lo, lo + shard_numel) of the
  // part's flat; parameter i lies at [offsets[i], + numels[i]) in it.
  const Part& pt = u.parts[u.part[i]];
  const int64_t lo = int64_t(rank_) * pt.shard_numel, hi = lo + pt.shard_numel;
  const int64_t from = std::max(lo, u.offsets[i]), to = std::min(hi, u.offsets[i] + u.numels[i]);
  if (from >= to) return std::nullopt;
  return Slice{from - u.offsets[i], to - from, pt.at + from - lo};
}

void Zero3::read_shards(std::vector<torch::Tensor>* per_unit,
                        const std::function<void(size_t, int64_t, const torch::Tensor&)>& read) {
  UNDO_CHECK(!per_unit || per_unit->size() == units_.size(), "zero3: ", per_unit->size(), " shards for ",
             units_.size(), " units");
  drop_prefetch();
  torch::NoGradGuard no_grad;
  for (size_t k = 0; k < units_.size(); ++k) {
    auto& u = units_[k];
    torch::Tensor shard = per_unit ? (*per_unit)[k] : u.shard.detach();
    UNDO_CHECK(shard.numel() == u.shard_numel, "zero3: a shard of ", shard.numel(), " elements for unit ", u.name,
               " of ", u.shard_numel);
    shard.zero_();  // the padding
    for (size_t i = 0; i < u.params.size(); ++i)
      if (auto mine = slice_of(u, i)) read(u.first_name + i, mine->start, shard.narrow(0, mine->at, mine->count));
  }
}

void Zero3::fill_from_wholes(const std::function<torch::Tensor(size_t)>& whole_of) {
  torch::NoGradGuard no_grad;
  for (auto& u : units_) {
    auto shard = u.shard.detach();
    for (size_t i = 0; i < u.params.size(); ++i) {
      auto whole = whole_of(u.first_name + i).reshape({-1});
      UNDO_CHECK(whole.numel() == u.numels[i], "zero3: ", whole.numel(), " values for ", names_[u.first_name + i],
                 " of ", u.numels[i]);
      if (auto mine = slice_of(u, i))
        shard.narrow(0, mine->at, mine->count).copy_(whole.narrow(0, mine->start, mine->count));
    }
  }
}

void Zero3::train_only(const std::set<const void*>& trained, bool recompute) {
  recompute_ = recompute;
  for (auto& u : units_) {
    bool any = false;
    for (size_t i = 0; i < u.params.size(); ++i) {
      u.trains[i] = trained.count(u.params[i].unsafeGetTensorImpl()) > 0;
      u.params[i].requires_grad_(u.trains[i]);
      any = any || u.trains[i];
    }
    u.shard.requires_grad_(any);
  }
}

std::pair<const Zero3::Unit*, size_t> Zero3::locate(size_t i) const {
  for (auto& u : units_)
    if (i >= u.first_name && i < u.first_name + u.params.size()) return {&u, i - u.first_name};
  UNDO_FAIL("zero3: no parameter ", i);
}

bool Zero3::trains(size_t i) const {
  auto [u, k] = locate(i);
  return u->trains[k];
}

const std::vector<int64_t>& Zero3::shape_of(size_t i) const {
  auto [u, k] = locate(i);
  return u->shapes[k];
}

int64_t Zero3::largest_unit_bytes() const {
  int64_t most = 0;
  for (auto& u : units_) most = std::max(most, u.shard_numel * world_ * int64_t(sizeof(float)));
  return most;
}

Transformer frozen_sharded_copy(Transformer& whole, std::shared_ptr<Communicator> comm) {
  Transformer copy(whole->cfg, /*storage=*/false);
  copy->eval();
  if (auto* sharded = dynamic_cast<Zero3*>(whole->runner.get())) {
    // Sharded alike (same model, same ranks): the shards are copied as they are.
    auto zero3 = std::make_shared<Zero3>(copy, std::move(comm), /*trained=*/false, sharded->shards().at(0).second.device());
    auto from = sharded->shards(), to = zero3->shards();
    torch::NoGradGuard no_grad;
    for (size_t k = 0; k < to.size(); ++k) to[k].second.detach().copy_(from.at(k).second.detach());
    copy->runner = zero3;
    return copy;
  }
  const auto source = whole->parameters();  // the model's order, as the shards name them
  auto zero3 = std::make_shared<Zero3>(copy, std::move(comm), /*trained=*/false, source.at(0).device());
  zero3->read_shards(nullptr, [&](size_t i, int64_t start, const torch::Tensor& dst) {
    dst.copy_(source.at(i).detach().reshape({-1}).narrow(0, start, dst.numel()));
  });
  copy->runner = zero3;
  return copy;
}

}  // namespace undo
