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

// The tasks on node `node` (counted from 0) of Slurm's tasks-per-node list
// ("2(x3),1": nodes 0-2 run 2 tasks, node 3 one). Throws InputError naming
// the variable on a list it cannot read or that has no such node.
int slurm_tasks_on_node(const std::string& spec, int node);

}  // namespace undo
