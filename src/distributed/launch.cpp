#include "distributed/launch.h"

#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace undo {
namespace {
bool env_int(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  UNDO_INPUT_CHECK(*end == '\0' && x >= 0, "environment variable ", name, "='", v, "' is not a count");
  *out = int(x);
  return true;
}
}  // namespace

int slurm_tasks_on_node(const std::string& spec, int node) {
  // "2(x3),1": a count, optionally repeated "(xN)" times, comma-separated.
  auto bad = [&] { return InputError("SLURM_STEP_TASKS_PER_NODE='" + spec + "' is not Slurm's tasks-per-node list"); };
  size_t at = 0;
  int64_t first = 0;  // the first node the next entry covers (64 bits: "(x2147483647)" twice must not wrap)
  auto read_int = [&] {  // the number at `at`, moving past it
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(spec.substr(at), &used);
    } catch (const std::exception&) {
      throw bad();
    }
    at += used;
    return v;
  };
  while (at < spec.size()) {
    const int count = read_int();
    int times = 1;
    if (spec.compare(at, 2, "(x") == 0) {
      at += 2;
      times = read_int();
      if (spec.compare(at, 1, ")") != 0) throw bad();
      ++at;
    }
    if (count < 0 || times < 1 || (at < spec.size() && spec[at] != ',')) throw bad();
    if (node < first + times) return count;
    first += times;
    ++at;  // the comma
  }
  throw InputError("SLURM_STEP_TASKS_PER_NODE='" + spec + "' lists " + std::to_string(first) +
                   " node(s), and this is node " + std::to_string(node));
}

LaunchInfo detect_launch() {
  LaunchInfo l;
  if (env_int("OMPI_COMM_WORLD_SIZE", &l.world)) {
    env_int("OMPI_COMM_WORLD_RANK", &l.rank);
    env_int("OMPI_COMM_WORLD_LOCAL_RANK", &l.local_rank);
    l.local_world = l.world;
    env_int("OMPI_COMM_WORLD_LOCAL_SIZE", &l.local_world);
    l.launcher = "mpi";
  } else if (env_int("SLURM_NTASKS", &l.world) && env_int("SLURM_PROCID", &l.rank)) {
    env_int("SLURM_LOCALID", &l.local_rank);
    // The step's tasks on this node: srun lists them per node (a job of 2
    // nodes without --ntasks-per-node is still 2 hosts: before this, it was
    // taken for one, and rank 0 served the rendezvous on loopback).
    l.local_world = l.world;
    int node = 0;
    const char* per_node = std::getenv("SLURM_STEP_TASKS_PER_NODE");
    if (per_node && *per_node && env_int("SLURM_NODEID", &node)) l.local_world = slurm_tasks_on_node(per_node, node);
    else env_int("SLURM_NTASKS_PER_NODE", &l.local_world);
    l.launcher = "slurm";
  } else if (env_int("WORLD_SIZE", &l.world)) {
    env_int("RANK", &l.rank);
    env_int("LOCAL_RANK", &l.local_rank);
    l.local_world = l.world;
    env_int("LOCAL_WORLD_SIZE", &l.local_world);
    l.launcher = "env";
  }
  UNDO_INPUT_CHECK(l.world >= 1 && l.rank < l.world, "launcher says rank ", l.rank, " of world size ", l.world);
  return l;
}

}  // namespace undo
