#include "distributed/launch.h"

#include <cstdlib>

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
    // SLURM_NTASKS_PER_NODE is only set when asked for; one node otherwise holds them all.
    l.local_world = l.world;
    env_int("SLURM_NTASKS_PER_NODE", &l.local_world);
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
