// src/sgckpt.cpp: the compiled mode's one translation unit (CMake target
// sgckpt::sgckpt_compiled). It compiles the implementation of load and save
// (io/pth.hpp) once; users of the target include <sgckpt/sgckpt.hpp> with SGCKPT_COMPILED
// defined and see only the declarations (io/pth_api.hpp).
#ifndef SGCKPT_COMPILED
#error "src/sgckpt.cpp is built as sgckpt::sgckpt_compiled, which defines SGCKPT_COMPILED"
#endif
#define SGCKPT_COMPILING_LIBRARY 1

#include "sgckpt/io/pth.hpp"
