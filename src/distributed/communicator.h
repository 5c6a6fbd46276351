// The ranks of a job and the collectives between them, over LibTorch's c10d
// (Gloo on CPU; NCCL where LibTorch has CUDA). World size 1 needs none of it.
//
// Rendezvous: MPI starts the job (mpirun, or srun with PMIx); rank 0 serves
// the rendezvous store (distributed/rendezvous.h) on a free port of the address the
// others use, and broadcasts host, port and a fresh secret over MPI. Without
// MPI: MASTER_ADDR/MASTER_PORT (torchrun style) with UNDO_DIST_SECRET or
// dist.secret_file, or a FileStore on a shared path.
//
// Failure: every rank bumps a heartbeat counter in the store from a thread.
// When a collective fails (it times out after dist.timeout_s), the rank looks
// for the counters that stopped moving, prints which rank was lost, and exits
// with code 3 at once (a half-dead process group cannot be shut down cleanly).
#pragma once
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "distributed/launch.h"
#include "distributed/rendezvous.h"

namespace undo {

class Communicator : public std::enable_shared_from_this<Communicator> {
 public:
  // A pending collective; wait() turns a failure into the lost-rank report.
  class Pending {
   public:
    Pending() = default;
    Pending(c10::intrusive_ptr<c10d::Work> work, Communicator* comm, std::string what)
        : work_(std::move(work)), comm_(comm), what_(std::move(what)) {}
    void wait();
    bool active() const { return bool(work_); }

   private:
    friend class Communicator;
    c10::intrusive_ptr<c10d::Work> work_;
    Communicator* comm_ = nullptr;
    std::string what_;
    torch::Tensor staged_, result_;  // a copy on the backend's device, and where wait() puts it back
  };

  Communicator(const DistConfig& cfg, const LaunchInfo& launch);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // This rank and the ranks' count: the job's, or within a group (subgroup).
  int rank() const { return rank_; }
  int world() const { return world_; }
  int local_rank() const { return launch_.local_rank; }
  int local_world() const { return launch_.local_world; }
  const std::string& backend() const { return backend_; }
  // Where the backend's collectives run: this rank's GPU for NCCL, the CPU for
  // Gloo. Tensors elsewhere are copied there and back.
  c10::Device device() const { return device_; }

  void broadcast(std::vector<torch::Tensor> tensors, int root);  // in place, blocking
  Pending allreduce_sum_async(torch::Tensor t, const std::string& what);
  void allreduce_sum(torch::Tensor t, const std::string& what);
  // ZeRO-3's two collectives (flat tensors, blocking). all_gather: `out` holds
  // world() x in.numel() elements, rank r's `in` at [r * n, (r + 1) * n).
  // reduce_scatter_sum: `out` (n elements) becomes the sum over ranks of their
  // `in` [rank * n, (rank + 1) * n).
  void all_gather(torch::Tensor out, torch::Tensor in, const std::string& what);
  Pending all_gather_async(torch::Tensor out, torch::Tensor in, const std::string& what);
  void reduce_scatter_sum(torch::Tensor out, torch::Tensor in, const std::string& what);
  double sum(double value, const std::string& what);  // of a scalar over ranks
  double mean(double value);                          // of a scalar over ranks
  bool any(bool flag, const std::string& what);       // true on every rank when it is true on one
  void barrier();

  // Prints "rank R: <what> failed: <error>; <who is lost>" and exits with code 3.
  [[noreturn]] void lost(const std::string& what, const std::string& error);

  // Collective over the job's ranks `ranks` (in order, this rank among them;
  // each of them calls it with the same list and name): a communicator of
  // those ranks alone, whose rank() and world() count within them (hybrid
  // sharding's shard and replica groups). `name` keeps its rendezvous keys
  // apart from other groups' and names it in errors; a lost rank is
  // diagnosed by the job's heartbeats. Called on the job's communicator.
  std::shared_ptr<Communicator> subgroup(const std::vector<int>& ranks, const std::string& name);

 private:
  Communicator(std::shared_ptr<Communicator> job, const std::vector<int>& ranks, const std::string& name);
  c10::intrusive_ptr<c10d::Backend> make_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                 int size) const;
  std::string diagnose();
  // Launches a collective from `in` into `out` (flat; on the backend's device while it runs).
  Pending flat_async(torch::Tensor out, torch::Tensor in, const std::string& what,
                     const std::function<c10::intrusive_ptr<c10d::Work>(at::Tensor&, at::Tensor&)>& launch);
  void heartbeat_loop();

  DistConfig cfg_;
  LaunchInfo launch_;
  int rank_, world_;
  std::string name_ = "job";
  std::string backend_;
  c10::Device device_{c10::kCPU};
  bool mpi_initialised_ = false;
  std::string store_host_, secret_;
  int store_port_ = 0;
  std::unique_ptr<RendezvousServer> server_;  // rank 0's
  c10::intrusive_ptr<c10d::Store> store_;
  // LibTorch 2.x: Gloo and NCCL are c10d::Backends (a ProcessGroup is a
  // dispatcher over them that undo does not need).
  c10::intrusive_ptr<c10d::Backend> pg_;
  std::atomic<bool> stop_{false};
  std::thread heartbeat_;
  std::shared_ptr<Communicator> job_;  // a group's: the job's communicator, which diagnoses a lost rank
  int groups_made_ = 0;                // the job's: subgroups made so far
};

// The job's communicator: created by init_distributed when the launcher says
// world > 1, else null (every caller treats null as a single process).
std::shared_ptr<Communicator> init_distributed(const DistConfig& cfg);
std::shared_ptr<Communicator> distributed();
void shutdown_distributed();  // at normal exit: stops heartbeats, finalises MPI

// The vote at a safe point (core/stop_signal.h): true on every rank when any
// rank received a stop signal. `comm` null: this process's own signal.
bool stop_vote(Communicator* comm);

}  // namespace undo
