# Builds and runs tests/consumer against sgckpt, as CTest tests consumer_find_package and
# consumer_add_subdirectory do (see tests/CMakeLists.txt). Run with cmake -P and:
#   MODE                 find_package | add_subdirectory
#   WORK_DIR             scratch directory (wiped first)
#   CONSUMER_SOURCE_DIR  tests/consumer
#   SGCKPT_SOURCE_DIR    the sgckpt source tree
#   SGCKPT_BUILD_DIR     (find_package) the configured and built sgckpt build tree to install
#   PREFIX               (find_package) where to install it (wiped first)
#   CONSUMER_GENERATOR, CONSUMER_CXX_COMPILER, CONSUMER_CXX_FLAGS, CONSUMER_LINK_FLAGS,
#   CONSUMER_BUILD_TYPE  (optional) how to build the consumer
cmake_minimum_required(VERSION 3.25)

foreach(var MODE WORK_DIR CONSUMER_SOURCE_DIR SGCKPT_SOURCE_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc COMMAND_ECHO STDOUT)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): command failed (${rc})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(build "${WORK_DIR}/build")

set(configure_args -S "${CONSUMER_SOURCE_DIR}" -B "${build}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(CONSUMER_GENERATOR)
  list(APPEND configure_args -G "${CONSUMER_GENERATOR}")
endif()
if(CONSUMER_CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER}")
endif()
if(CONSUMER_BUILD_TYPE)
  list(APPEND configure_args "-DCMAKE_BUILD_TYPE=${CONSUMER_BUILD_TYPE}")
endif()
if(CONSUMER_CXX_FLAGS)
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=${CONSUMER_CXX_FLAGS}")
endif()
if(CONSUMER_LINK_FLAGS)
  list(APPEND configure_args "-DCMAKE_EXE_LINKER_FLAGS=${CONSUMER_LINK_FLAGS}")
endif()

if(MODE STREQUAL "find_package")
  foreach(var SGCKPT_BUILD_DIR PREFIX)
    if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
      message(FATAL_ERROR "run.cmake: -D${var}=... is required for MODE=find_package")
    endif()
  endforeach()

  # Install the current build into a fresh prefix.
  file(REMOVE_RECURSE "${PREFIX}")
  run("${CMAKE_COMMAND}" --install "${SGCKPT_BUILD_DIR}" --prefix "${PREFIX}")
  foreach(f include/sgckpt/core/state.hpp
            include/sgckpt/detail/pickle/reader.hpp  # the nested detail/ layers are installed too
            include/sgckpt/detail/zip/reader.hpp
            include/sgckpt/detail/fs/file.hpp
            share/cmake/sgckpt/sgckptConfig.cmake
            share/cmake/sgckpt/sgckptConfigVersion.cmake
            share/cmake/sgckpt/sgckptTargets.cmake
            share/cmake/sgckpt/sgckptEngineTargets.cmake
            share/pkgconfig/sgckpt.pc)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "consumer (find_package): ${f} was not installed into ${PREFIX}")
    endif()
  endforeach()

  # The pkg-config file must point at the prefix it was installed into.
  find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
  if(PKG_CONFIG_EXECUTABLE)
    execute_process(
      COMMAND "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${PREFIX}/share/pkgconfig"
              "${PKG_CONFIG_EXECUTABLE}" --cflags sgckpt
      OUTPUT_VARIABLE pc_cflags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
    file(REAL_PATH "${PREFIX}/include" real_include)
    string(REGEX MATCH "-I([^ ]*)" _ "${pc_cflags}")
    set(pc_include "${CMAKE_MATCH_1}")
    if(pc_include)
      file(REAL_PATH "${pc_include}" pc_include)
    endif()
    if(NOT rc EQUAL 0 OR NOT pc_include STREQUAL real_include)
      message(FATAL_ERROR "consumer (find_package): pkg-config --cflags sgckpt gave '${pc_cflags}' "
                          "(expected -I${PREFIX}/include)")
    endif()
    message(STATUS "pkg-config --cflags sgckpt: ${pc_cflags}")
  endif()

  run("${CMAKE_COMMAND}" ${configure_args} "-DCMAKE_PREFIX_PATH=${PREFIX}")

  # It must have found the package we just installed, not some other copy.
  file(STRINGS "${build}/CMakeCache.txt" found_dir REGEX "^sgckpt_DIR:")
  string(REGEX REPLACE "^sgckpt_DIR:[A-Z]+=" "" found_dir "${found_dir}")
  file(REAL_PATH "${found_dir}" found_dir)
  file(REAL_PATH "${PREFIX}/share/cmake/sgckpt" expected_dir)
  if(NOT found_dir STREQUAL expected_dir)
    message(FATAL_ERROR "consumer (find_package): found sgckpt in ${found_dir}, expected ${expected_dir}")
  endif()
elseif(MODE STREQUAL "add_subdirectory")
  run("${CMAKE_COMMAND}" ${configure_args} "-DSGCKPT_SUBDIRECTORY=${SGCKPT_SOURCE_DIR}")
else()
  message(FATAL_ERROR "run.cmake: MODE must be find_package or add_subdirectory (got '${MODE}')")
endif()

run("${CMAKE_COMMAND}" --build "${build}")
run("${build}/app")
run("${build}/engine_app")
if(EXISTS "${build}/remote_app")
  run("${build}/remote_app" "${build}/remote_app_store")
endif()
message(STATUS "consumer (${MODE}): OK")
