#include "distributed/communicator.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <mpi.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef UNDO_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "core/config.h"
#include "core/error.h"
#include "core/stop_signal.h"
#include "distributed/rendezvous.h"
#include "model/device.h"

namespace undo {
namespace {

using ms = std::chrono::milliseconds;
constexpr int kHeartbeatMs = 250;

std::shared_ptr<Communicator>& global_comm() {
  static std::shared_ptr<Communicator> c;
  return c;
}

std::string heartbeat_key(int rank) { return "undo/alive/" + std::to_string(rank); }

// The IPv4 address of the network interface `name`; throws naming it when it has none.
std::string interface_address(const std::string& name) {
  ifaddrs* all = nullptr;
  UNDO_CHECK(::getifaddrs(&all) == 0, "cannot list this host's network interfaces");
  std::string found;
  for (ifaddrs* i = all; i && found.empty(); i = i->ifa_next)
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && name == i->ifa_name) {
      char text[INET_ADDRSTRLEN] = {0};
      ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
      found = text;
    }
  ::freeifaddrs(all);
  UNDO_INPUT_CHECK(!found.empty(), "GLOO_SOCKET_IFNAME = '", name, "': rank 0 has no network interface of that name "
                   "with an IPv4 address (set dist.addr to the address of rank 0 that the others reach)");
  return found;
}

// The host rank 0 serves the rendezvous on: loopback when every rank is on
// its host, else dist.addr, else the address of the interface that
// GLOO_SOCKET_IFNAME names (the network the ranks' own connections use: on a
// cluster whose hosts share a hostname's resolution, or have several
// networks), else its hostname, which must not resolve to a loopback address
// (Debian maps the hostname to 127.0.1.1).
std::string rendezvous_host(const DistConfig& cfg, const LaunchInfo& launch) {
  if (launch.local_world == launch.world) return "127.0.0.1";
  if (!cfg.addr.empty()) return cfg.addr;
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) return interface_address(ifname);
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_INET;
  if (::getaddrinfo(host, nullptr, &hints, &found) == 0 && found) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(found->ai_addr);
    bool loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    ::freeaddrinfo(found);
    UNDO_INPUT_CHECK(!loopback, "rank 0's hostname '", host, "' resolves to a loopback address, which the other "
                     "hosts cannot reach: set dist.addr to the address of rank 0 that they reach");
  }
  return host;
}

}  // namespace

void Communicator::Pending::wait() {
  if (!work_) return;
  try {
    work_->wait();
  } catch (const std::exception& e) {
    comm_->lost(what_, e.what());
  }
  work_.reset();
  if (result_.defined()) {
    torch::NoGradGuard no_grad;
    result_.copy_(staged_);
    staged_ = result_ = torch::Tensor();
  }
}

Communicator::Communicator(const DistConfig& cfg, const LaunchInfo& launch)
    : cfg_(cfg), launch_(launch), rank_(launch.rank), world_(launch.world) {
  const ms timeout(int64_t(cfg.timeout_s * 1000));
  bool use_mpi = cfg.store == "tcp" && (launch.launcher == "mpi" || launch.launcher == "slurm");
  if (use_mpi) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    mpi_initialised_ = true;
    int mpi_rank = 0, mpi_world = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_world);
    UNDO_CHECK(mpi_rank == launch.rank && mpi_world == launch.world, "MPI says rank ", mpi_rank, " of ", mpi_world,
               ", the launcher's environment ", launch.rank, " of ", launch.world);
  }
  if (cfg.store == "file") {
    UNDO_INPUT_CHECK(!cfg.store_path.empty(), "dist.store = file needs dist.store_path (a path all ranks share)");
    store_ = c10::make_intrusive<c10d::FileStore>(cfg.store_path, launch.world);
  } else {
    // Rank 0 serves the rendezvous on the address the others use, and admits
    // only ranks that prove the job's secret (distributed/rendezvous.h). Under MPI,
    // rank 0 makes the secret and sends it, with host and port, over MPI.
    char host[256] = {0}, secret[65] = {0};
    if (launch.rank == 0 || !use_mpi) {
      std::string h = use_mpi ? rendezvous_host(cfg, launch) : std::string();
      if (!use_mpi) {
        const char* addr = std::getenv("MASTER_ADDR");
        const char* port = std::getenv("MASTER_PORT");
        UNDO_INPUT_CHECK(addr && port, "rank ", launch.rank,
                         ": launched without MPI: set MASTER_ADDR and MASTER_PORT, or dist.store = file");
        h = addr;
        store_port_ = int(parse_integer("MASTER_PORT", port, 1, 65535));
      }
      UNDO_INPUT_CHECK(h.size() < sizeof host, "rendezvous host '", h, "' is too long");
      std::snprintf(host, sizeof host, "%s", h.c_str());
      secret_ = use_mpi ? random_secret() : job_secret_from(cfg.secret_file);
    }
    if (launch.rank == 0) {
      server_ = std::make_unique<RendezvousServer>(host, store_port_, secret_);
      store_port_ = server_->port();
    }
    if (use_mpi) {
      std::snprintf(secret, sizeof secret, "%s", secret_.c_str());
      MPI_Bcast(&store_port_, 1, MPI_INT, 0, MPI_COMM_WORLD);
      MPI_Bcast(host, sizeof host, MPI_CHAR, 0, MPI_COMM_WORLD);
      MPI_Bcast(secret, sizeof secret, MPI_CHAR, 0, MPI_COMM_WORLD);
      secret_ = secret;
    }
    store_host_ = host;
    store_ = c10::make_intrusive<RendezvousStore>(store_host_, store_port_, secret_, timeout);
  }
  auto store = c10::make_intrusive<c10d::PrefixStore>("undo", store_);

  backend_ = cfg.backend;
  if (backend_ == "auto") {
    backend_ = "gloo";
#ifdef UNDO_WITH_NCCL
    if (computing_on_cuda()) backend_ = "nccl";  // ranks that compute on GPUs reduce there
#endif
  }
  if (backend_ == "nccl") {
#ifdef UNDO_WITH_NCCL
    UNDO_INPUT_CHECK(torch::cuda::device_count() > 0, "dist.backend = nccl, but no GPU is visible to rank ", launch.rank);
    device_ = c10::Device(c10::kCUDA, c10::DeviceIndex(launch.local_rank % int(torch::cuda::device_count())));
#else
    throw InputError("dist.backend = nccl: this build's LibTorch has no CUDA (see docs/ARCHITECTURE.md)");
#endif
  }
  pg_ = make_backend(store, launch.rank, launch.world);
  if (cfg.store == "tcp") heartbeat_ = std::thread([this] { heartbeat_loop(); });
}

c10::intrusive_ptr<c10d::Backend> Communicator::make_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                            int size) const {
  const ms timeout(int64_t(cfg_.timeout_s * 1000));
  if (backend_ == "nccl") {
#ifdef UNDO_WITH_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
#endif
  }
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // Where this rank's Gloo connections listen: the interface GLOO_SOCKET_IFNAME
  // names (PyTorch's variable: a host on several networks, or a network
  // namespace), else loopback for a one-host job, else the hostname's address.
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  opts->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                          : launch_.local_world == launch_.world
                              ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                              : c10d::ProcessGroupGloo::createDefaultDevice());
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
}

Communicator::Communicator(std::shared_ptr<Communicator> job, const std::vector<int>& ranks, const std::string& name)
    : cfg_(job->cfg_), launch_(job->launch_), rank_(-1), world_(int(ranks.size())), name_(name), backend_(job->backend_),
      device_(job->device_), store_(job->store_), job_(std::move(job)) {
  for (size_t i = 0; i < ranks.size(); ++i)
    if (ranks[i] == job_->rank()) rank_ = int(i);
  UNDO_CHECK(rank_ >= 0, "rank ", job_->rank(), " is not in the group ", name);
  pg_ = make_backend(c10::make_intrusive<c10d::PrefixStore>("undo/group/" + name, store_), rank_, world_);
}

std::shared_ptr<Communicator> Communicator::subgroup(const std::vector<int>& ranks, const std::string& name) {
  UNDO_CHECK(!job_, "a group of a group (", name_, ")");
  // Numbered: a later group of the same ranks (the next stage's layout in
  // this process) never meets an earlier one's keys. Every rank makes its
  // groups in the same order, so the numbers agree.
  const std::string unique = name + "." + std::to_string(groups_made_++);
  return std::shared_ptr<Communicator>(new Communicator(shared_from_this(), ranks, unique));
}

Communicator::~Communicator() {
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
  pg_.reset();
  store_.reset();
  server_.reset();
  if (mpi_initialised_) MPI_Finalize();
}

void Communicator::heartbeat_loop() {
  // A connection of its own: the store client is not shared between threads.
  c10::intrusive_ptr<c10d::Store> client;
  try {
    client = c10::make_intrusive<RendezvousStore>(store_host_, store_port_, secret_, ms(int64_t(cfg_.timeout_s * 1000)));
    while (!stop_) {
      client->add(heartbeat_key(launch_.rank), 1);
      std::this_thread::sleep_for(ms(kHeartbeatMs));
    }
  } catch (const std::exception&) {
    // The store is gone (rank 0 died or the job is ending): the collectives report it.
  }
}

std::string Communicator::diagnose() {
  if (cfg_.store != "tcp") return "cannot tell which rank was lost (no heartbeats with dist.store = file)";
  try {
    auto client = c10::make_intrusive<RendezvousStore>(store_host_, store_port_, secret_, ms(3000));
    auto read = [&] {
      std::vector<int64_t> v(size_t(launch_.world));
      for (int r = 0; r < launch_.world; ++r) v[size_t(r)] = client->add(heartbeat_key(r), 0);
      return v;
    };
    auto before = read();
    std::this_thread::sleep_for(ms(4 * kHeartbeatMs));
    auto after = read();
    std::string lost;
    for (int r = 0; r < launch_.world; ++r)
      if (after[size_t(r)] == before[size_t(r)]) lost += (lost.empty() ? "" : ", ") + std::to_string(r);
    if (lost.empty()) return "every rank's heartbeat is still moving (a slow rank, or a timeout too short?)";
    return "lost rank " + lost + " (its heartbeat stopped)";
  } catch (const std::exception&) {
    return "lost rank 0 (it hosts the rendezvous store, which no longer answers)";
  }
}

void Communicator::lost(const std::string& what, const std::string& error) {
  if (job_) job_->lost(what + " (in the rank group " + name_ + ")", error);  // the job's heartbeats say who
  // A stopped rank 0 still accepts connections to its store (the kernel does)
  // but never answers: the diagnosis gets a deadline of its own.
  auto result = std::make_shared<std::promise<std::string>>();
  auto answer = result->get_future();
  std::thread([this, result] {
    try {
      result->set_value(diagnose());
    } catch (...) {
    }
  }).detach();
  std::string who = answer.wait_for(std::chrono::seconds(8)) == std::future_status::ready
                        ? answer.get()
                        : "lost rank 0 (it hosts the rendezvous store, which no longer answers)";
  std::fprintf(stderr, "rank %d: %s failed: %s\nrank %d: %s; exiting\n", rank(), what.c_str(), error.c_str(),
               rank(), who.c_str());
  std::fflush(stderr);
  std::_Exit(3);
}

void Communicator::broadcast(std::vector<torch::Tensor> tensors, int root) {
  c10d::BroadcastOptions o;
  o.rootRank = root;
  for (auto& t : tensors) {
    bool staged = t.device() != device_;
    std::vector<torch::Tensor> one{staged ? t.to(device_) : t};
    Pending(pg_->broadcast(one, o), this, "broadcast").wait();
    if (staged) {
      torch::NoGradGuard no_grad;
      t.copy_(one[0]);
    }
  }
}

Communicator::Pending Communicator::allreduce_sum_async(torch::Tensor t, const std::string& what) {
  bool staged = t.device() != device_;
  std::vector<torch::Tensor> one{staged ? t.to(device_) : t};
  try {
    Pending p(pg_->allreduce(one), this, what);
    if (staged) p.staged_ = one[0], p.result_ = t;
    return p;
  } catch (const std::exception& e) {
    lost(what, e.what());
  }
}

void Communicator::allreduce_sum(torch::Tensor t, const std::string& what) {
  allreduce_sum_async(std::move(t), what).wait();
}

Communicator::Pending Communicator::flat_async(
    torch::Tensor out, torch::Tensor in, const std::string& what,
    const std::function<c10::intrusive_ptr<c10d::Work>(at::Tensor&, at::Tensor&)>& launch) {
  // The backend takes contiguous tensors on its device; others go through a
  // copy there, and wait() copies the result back into `out`.
  const bool staged = out.device() != device_ || !out.is_contiguous();
  auto o = staged ? torch::empty(out.sizes(), out.options().device(device_)) : out;
  auto i = in.device() == device_ && in.is_contiguous() ? in : in.to(device_).contiguous();
  try {
    Pending p(launch(o, i), this, what);  // the work keeps both tensors alive
    if (staged) p.staged_ = o, p.result_ = out;
    return p;
  } catch (const std::exception& e) {
    lost(what, e.what());
  }
}

Communicator::Pending Communicator::all_gather_async(torch::Tensor out, torch::Tensor in, const std::string& what) {
  UNDO_CHECK(out.numel() == in.numel() * world(), what, ": all-gather of ", in.numel(), " into ", out.numel());
  return flat_async(out, in, what, [this](at::Tensor& o, at::Tensor& i) { return pg_->_allgather_base(o, i); });
}

void Communicator::all_gather(torch::Tensor out, torch::Tensor in, const std::string& what) {
  all_gather_async(std::move(out), std::move(in), what).wait();
}

void Communicator::reduce_scatter_sum(torch::Tensor out, torch::Tensor in, const std::string& what) {
  UNDO_CHECK(in.numel() == out.numel() * world(), what, ": reduce-scatter of ", in.numel(), " into ", out.numel());
  flat_async(out, in, what, [this](at::Tensor& o, at::Tensor& i) { return pg_->_reduce_scatter_base(o, i); })
      .wait();
}

double Communicator::sum(double value, const std::string& what) {
  auto t = torch::tensor({value}, torch::kDouble);
  allreduce_sum(t, what);
  return t.item<double>();
}

double Communicator::mean(double value) { return sum(value, "all-reduce of a metric") / world(); }

bool Communicator::any(bool flag, const std::string& what) { return sum(flag ? 1.0 : 0.0, what) > 0; }

bool stop_vote(Communicator* comm) {
  count_safe_point();
  return comm ? comm->any(stop_signalled(), "all-reduce of the stop vote") : stop_signalled();
}

void Communicator::barrier() {
  try {
    pg_->barrier()->wait();
  } catch (const std::exception& e) {
    lost("barrier", e.what());
  }
}

std::shared_ptr<Communicator> init_distributed(const DistConfig& cfg) {
  auto& c = global_comm();
  if (c) return c;
  LaunchInfo launch = detect_launch();
  if (launch.world > 1) c = std::make_shared<Communicator>(cfg, launch);
  return c;
}

std::shared_ptr<Communicator> distributed() { return global_comm(); }

void shutdown_distributed() { global_comm().reset(); }

}  // namespace undo
