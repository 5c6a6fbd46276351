// Who am I in the job: rank, world size and local rank, from the launcher
// (Open MPI's mpirun, Slurm's srun, or torchrun-style RANK/WORLD_SIZE).
#pragma once
#include <string>

namespace undo {

struct LaunchInfo {
  int rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string launcher = "none";  // none | mpi | slurm | env
};

LaunchInfo detect_launch();

}  // namespace undo
