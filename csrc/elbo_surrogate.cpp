#include <torch/library.h>
TORCH_LIBRARY(vgrpo, m) { m.def("ping(Tensor x) -> Tensor"); }
