# Registers the doctest cases of one test executable with CTest. Runs inside ctest (it is a
# TEST_INCLUDE_FILES script, see tests/CMakeLists.txt), so the list is always that of the
# executable as last built and CMake never has to be re-run when a TEST_CASE is added.
#
# Layout of the registered tests:
#   * one CTest test per source file, named after its path under tests/ without "test_":
#     tests/io/test_zip.cpp -> "io/zip", running every case of that file that is not slow;
#     labels: doctest, <first folder> (e.g. io);
#   * one CTest test per slow case, "io/zip/<case name>", label slow as well.
#     A case is slow when its name contains "[slow]" or its test suite is "slow":
#       TEST_CASE("zip64 round trip of a 5 GiB record [slow]") { ... }
#       TEST_CASE("..." * doctest::test_suite("slow")) { ... }
#
# Input variables (set by the generated include file):
#   SGCKPT_DOCTEST_EXE, SGCKPT_DOCTEST_SOURCE_ROOT, SGCKPT_DOCTEST_WORK_ROOT,
#   SGCKPT_DOCTEST_ENV (list of NAME=value), SGCKPT_DOCTEST_TIMEOUT, SGCKPT_DOCTEST_SLOW_TIMEOUT,
#   SGCKPT_DOCTEST_CMAKE (path of cmake, for the placeholder tests)

function(_sgckpt_doctest_fail_test name why)
  message(WARNING "sgckpt: ${why}")
  add_test("${name}" "${SGCKPT_DOCTEST_CMAKE}" -E false)
  set_tests_properties("${name}" PROPERTIES LABELS "doctest")
endfunction()

# doctest filters split on ',' (escape as '\,') and treat '*' and '?' as wildcards.
function(_sgckpt_doctest_escape_filter out value)
  string(REPLACE "," "\\," value "${value}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(_sgckpt_doctest_xml_unescape out value)
  string(REPLACE "&quot;" "\"" value "${value}")
  string(REPLACE "&apos;" "'" value "${value}")
  string(REPLACE "&lt;" "<" value "${value}")
  string(REPLACE "&gt;" ">" value "${value}")
  string(REPLACE "&amp;" "&" value "${value}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

# CMake lists treat ';' as a separator and '[' ']' as grouping: hide them while splitting lines
# (restore before XML-unescaping: the entities themselves end in ';').
function(_sgckpt_doctest_restore out value)
  string(REPLACE "@SGCKPT_SEMI@" ";" value "${value}")
  string(REPLACE "@SGCKPT_LB@" "[" value "${value}")
  string(REPLACE "@SGCKPT_RB@" "]" value "${value}")
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(_sgckpt_doctest_add_tests)
  get_filename_component(exe_name "${SGCKPT_DOCTEST_EXE}" NAME)
  if(NOT EXISTS "${SGCKPT_DOCTEST_EXE}")
    _sgckpt_doctest_fail_test("${exe_name}_NOT_BUILT"
      "${SGCKPT_DOCTEST_EXE} does not exist: build the project before running ctest")
    return()
  endif()

  execute_process(
    COMMAND "${SGCKPT_DOCTEST_EXE}" --list-test-cases --reporters=xml
    OUTPUT_VARIABLE listing
    ERROR_VARIABLE listing_err
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    _sgckpt_doctest_fail_test("${exe_name}_LIST_FAILED"
      "'${SGCKPT_DOCTEST_EXE} --list-test-cases' failed (${rc}): ${listing_err}")
    return()
  endif()

  string(REPLACE ";" "@SGCKPT_SEMI@" listing "${listing}")
  string(REPLACE "[" "@SGCKPT_LB@" listing "${listing}")
  string(REPLACE "]" "@SGCKPT_RB@" listing "${listing}")
  string(REPLACE "\n" ";" lines "${listing}")

  set(files "")
  foreach(line IN LISTS lines)
    if(NOT line MATCHES "^ *<TestCase name=\"([^\"]*)\"( testsuite=\"([^\"]*)\")? filename=\"([^\"]*)\"")
      continue()
    endif()
    set(name "${CMAKE_MATCH_1}")
    set(suite "${CMAKE_MATCH_3}")
    set(file "${CMAKE_MATCH_4}")
    set(skipped OFF)
    if(line MATCHES " skipped=\"true\"")
      set(skipped ON)  # * doctest::skip(): listed, never run; registering it would run 0 cases
    endif()
    _sgckpt_doctest_restore(file "${file}")
    _sgckpt_doctest_xml_unescape(file "${file}")
    string(MD5 key "${file}")
    if(NOT DEFINED _file_${key})
      set(_file_${key} "${file}")
      set(_normal_${key} 0)
      set(_slow_${key} "")
      list(APPEND files "${key}")
    endif()
    # Names stay in their escaped/hidden form in lists; they are restored at registration.
    if(name MATCHES "@SGCKPT_LB@slow@SGCKPT_RB@" OR suite STREQUAL "slow")
      if(NOT skipped)
        list(APPEND _slow_${key} "${name}")
      endif()
    elseif(NOT skipped)
      math(EXPR _normal_${key} "${_normal_${key}} + 1")
    endif()
  endforeach()

  # A filter that selects nothing makes doctest pass with 0 cases: treat that as a failure.
  set(no_case_ran "\\[doctest\\] test cases: 0 \\|")
  foreach(key IN LISTS files)
    set(file "${_file_${key}}")
    # Group name: path under the tests folder, "test_" dropped from the file name.
    file(RELATIVE_PATH rel "${SGCKPT_DOCTEST_SOURCE_ROOT}" "${file}")
    if(rel MATCHES "^\\.\\./" OR IS_ABSOLUTE "${rel}")
      get_filename_component(rel "${file}" NAME)
    endif()
    string(REGEX REPLACE "\\.[^./]*$" "" group "${rel}")
    string(REGEX REPLACE "(^|/)test_([^/]*)$" "\\1\\2" group "${group}")
    string(REGEX MATCH "^[^/]+/" area "${rel}")
    string(REPLACE "/" "" area "${area}")
    set(labels doctest)
    if(area)
      list(APPEND labels "${area}")
    endif()
    _sgckpt_doctest_escape_filter(file_filter "${file}")

    # The slow cases of this file, as one exclusion filter for the group run.
    set(exclude "")
    foreach(name IN LISTS _slow_${key})
      _sgckpt_doctest_restore(name "${name}")
      _sgckpt_doctest_xml_unescape(name "${name}")
      _sgckpt_doctest_escape_filter(filter "${name}")
      if(exclude STREQUAL "")
        set(exclude "${filter}")
      else()
        string(APPEND exclude ",${filter}")
      endif()

      string(REGEX REPLACE "[^A-Za-z0-9_.-]+" "_" dir_name "${name}")
      set(test_name "${group}/${name}")
      set(work "${SGCKPT_DOCTEST_WORK_ROOT}/${group}/${dir_name}")
      file(MAKE_DIRECTORY "${work}")
      add_test("${test_name}" "${SGCKPT_DOCTEST_EXE}" --case-sensitive=true
               "--source-file=${file_filter}" "--test-case=${filter}")
      set_tests_properties("${test_name}" PROPERTIES
        LABELS "${labels};slow"
        WORKING_DIRECTORY "${work}"
        ENVIRONMENT "${SGCKPT_DOCTEST_ENV}"
        FAIL_REGULAR_EXPRESSION "${no_case_ran}"
        TIMEOUT "${SGCKPT_DOCTEST_SLOW_TIMEOUT}")
    endforeach()

    if(_normal_${key} GREATER 0)
      set(work "${SGCKPT_DOCTEST_WORK_ROOT}/${group}")
      file(MAKE_DIRECTORY "${work}")
      # (no list variable for the arguments: names may contain ';' or brackets)
      if(exclude STREQUAL "")
        add_test("${group}" "${SGCKPT_DOCTEST_EXE}" --case-sensitive=true "--source-file=${file_filter}")
      else()
        add_test("${group}" "${SGCKPT_DOCTEST_EXE}" --case-sensitive=true "--source-file=${file_filter}"
                 "--test-case-exclude=${exclude}")
      endif()
      set_tests_properties("${group}" PROPERTIES
        LABELS "${labels}"
        WORKING_DIRECTORY "${work}"
        ENVIRONMENT "${SGCKPT_DOCTEST_ENV}"
        FAIL_REGULAR_EXPRESSION "${no_case_ran}"
        TIMEOUT "${SGCKPT_DOCTEST_TIMEOUT}")
    endif()
  endforeach()
endfunction()

_sgckpt_doctest_add_tests()
