// Precompiled header for every translation unit of undo_lib and the tests:
// <torch/torch.h> alone costs ~15 s per file without it.
#pragma once
#include <torch/torch.h>
