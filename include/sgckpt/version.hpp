// sgckpt/version.hpp: the library's version, the one place it is written (CMakeLists.txt reads
// it from here for project() and the package's version file).
#pragma once

#define SGCKPT_VERSION_MAJOR 0
#define SGCKPT_VERSION_MINOR 1
#define SGCKPT_VERSION_PATCH 0
#define SGCKPT_VERSION_STRING "0.1.0"
