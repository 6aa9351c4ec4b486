# qiao_area(NAME DIR [DEPS ...]): a static library of every .c file in DIR.
function(qiao_area name dir)
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS "${dir}/*.c")
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
    target_link_libraries(${name} PUBLIC ${ARGN})
  else() # an area whose work has not started yet
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src)
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()

# qiao_test(NAME COMMAND ...): a CTest test that sees QIAO_SHARED, QIAO_BIN
# (the qiao executable) and QIAO_SOURCE_DIR in its environment. It runs
# through tests/run_test.sh, which takes $QIAO_SHARED from ctest's own
# environment when set (else QIAO_SHARED_DIR) and fails when that folder does
# not exist. Exit status 77 (test_util.h TEST_SKIP) shows as skipped.
function(qiao_test name)
  set(command ${ARGN})
  list(GET command 0 program)
  if(TARGET ${program})
    list(REMOVE_AT command 0)
    list(PREPEND command $<TARGET_FILE:${program}>)
  endif()
  add_test(NAME ${name} COMMAND sh ${CMAKE_SOURCE_DIR}/tests/run_test.sh ${command})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 ENVIRONMENT
    "QIAO_SHARED_DEFAULT=${QIAO_SHARED_DIR};QIAO_BIN=$<TARGET_FILE:qiao>;QIAO_SOURCE_DIR=${CMAKE_SOURCE_DIR};QIAO_BUILD_DIR=${CMAKE_BINARY_DIR}")
endfunction()

# qiao_test_program(NAME SOURCES... LIBS ...): a C test program run by CTest.
function(qiao_test_program name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/src
                             ${CMAKE_SOURCE_DIR}/tests)
  qiao_test(${name} ${name})
endfunction()
