#pragma once
#include "cuda_sim.h"
