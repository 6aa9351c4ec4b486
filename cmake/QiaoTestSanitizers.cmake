# QiaoTestSanitizers.cmake: what tests that load libqiao.so from outside the
# build need when it is built with sanitizers (QIAO_SANITIZE). A program
# compiled out of tree must link the same runtime (QIAO_SANITIZE_FLAGS);
# Python must load the ASan runtime before anything else (QIAO_TEST_PRELOAD),
# and its own allocations are not ours to leak-check.
set(QIAO_SANITIZE_FLAGS "")
set(QIAO_TEST_PRELOAD "")
if(QIAO_SANITIZE)
  set(QIAO_SANITIZE_FLAGS "-fsanitize=address,undefined -fno-sanitize-recover=all")
  if(CMAKE_C_COMPILER_ID STREQUAL "Clang")
    set(asan_runtime libclang_rt.asan-${CMAKE_SYSTEM_PROCESSOR}.so)
  else()
    set(asan_runtime libasan.so)
  endif()
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=${asan_runtime}
                  OUTPUT_VARIABLE QIAO_TEST_PRELOAD OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
# Debian's python3 first (what CI and the package use), else any on the PATH.
find_program(QIAO_PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
find_program(QIAO_PYTHON3 NAMES python3)
if(NOT QIAO_PYTHON3)
  set(QIAO_PYTHON3 python3) # the test then fails, saying so
endif()
