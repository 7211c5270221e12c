// cooperative_groups.h of the CPU device simulator: the grid group of a cooperative launch.
#pragma once
#include "cuda_sim.h"

namespace cooperative_groups {

struct grid_group {
    void sync() const { cuda_sim::grid_sync(); }
};

inline grid_group this_grid() { return grid_group{}; }

}  // namespace cooperative_groups
