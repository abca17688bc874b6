# Included by tests/CMakeLists.txt in every build: the plain corpus replay driver (no
# libFuzzer, any compiler; sanitized when SGCKPT_SANITIZE=ON) runs both fuzz targets over the
# fuzzing regressions, the seed corpus and the hostile corpus (CTest test fuzz/replay).
add_executable(fuzz_replay ${CMAKE_CURRENT_LIST_DIR}/fuzz_replay.cpp)
target_link_libraries(fuzz_replay PRIVATE sgckpt::sgckpt)
add_test(NAME fuzz/replay
         COMMAND fuzz_replay ${CMAKE_CURRENT_LIST_DIR}/regressions ${CMAKE_CURRENT_LIST_DIR}/seeds
                 ${CMAKE_CURRENT_LIST_DIR}/../hostile)
set_tests_properties(fuzz/replay PROPERTIES LABELS "fuzz;security" TIMEOUT 900)
