# QiaoLibrary.cmake: libqiao.so.MAJOR, the one shared library that programs
# outside this tree link (docs/api.md). Included from src/CMakeLists.txt.
#
# It is made of the area libraries whole, so that every public function is
# in it, and exports exactly the functions listed in libqiao.symbols (the
# frozen public API; tests/install checks both that the list equals what the
# headers declare and that the library exports nothing else). Everything else,
# including the internal qiao__* helpers, stays local.
include(GNUInstallDirs)

# The version in include/qiao/version.h must be the project's.
file(STRINGS ${CMAKE_SOURCE_DIR}/include/qiao/version.h qiao_version_line
     REGEX "^#define QIAO_VERSION_STRING ")
string(REGEX REPLACE ".*\"(.*)\".*" "\\1" qiao_header_version "${qiao_version_line}")
if(NOT qiao_header_version STREQUAL PROJECT_VERSION)
  message(FATAL_ERROR "include/qiao/version.h says ${qiao_header_version}, "
                      "CMakeLists.txt project() says ${PROJECT_VERSION}")
endif()

set(QIAO_INSTALL_PLUGINDIR ${CMAKE_INSTALL_LIBDIR}/qiao CACHE STRING
    "Where installed device plugins go, below the install prefix")

# The linker version script, written from the frozen list.
set(qiao_symbols_file ${CMAKE_SOURCE_DIR}/cmake/libqiao.symbols)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${qiao_symbols_file})
file(STRINGS ${qiao_symbols_file} qiao_symbols REGEX "^qiao_")
list(JOIN qiao_symbols ";\n    " qiao_symbol_lines)
set(qiao_map ${CMAKE_BINARY_DIR}/libqiao.map)
file(CONFIGURE OUTPUT ${qiao_map} CONTENT
     "QIAO_${PROJECT_VERSION_MAJOR} {\n  global:\n    ${qiao_symbol_lines};\n  local:\n    *;\n};\n")

# A shared library needs one source of its own; the code is all in the areas.
set(qiao_lib_source ${CMAKE_BINARY_DIR}/libqiao.c)
file(CONFIGURE OUTPUT ${qiao_lib_source}
     CONTENT "/* libqiao.so is linked from the area libraries (cmake/QiaoLibrary.cmake). */\n")

set(qiao_lib_areas qiao_core qiao_format qiao_tokenizer qiao_template qiao_device qiao_cpu
    qiao_constrain qiao_engine qiao_pool qiao_scheduler qiao_conformance)
add_library(qiao_shared SHARED ${qiao_lib_source})
set(qiao_whole)
foreach(area ${qiao_lib_areas})
  list(APPEND qiao_whole "$<$<STREQUAL:$<TARGET_PROPERTY:${area},TYPE>,STATIC_LIBRARY>:$<TARGET_FILE:${area}>>")
endforeach()
target_link_options(qiao_shared PRIVATE "LINKER:--whole-archive" ${qiao_whole}
                    "LINKER:--no-whole-archive" "LINKER:--version-script=${qiao_map}")
# Every symbol resolved at link time, except under sanitizers, whose runtime
# clang leaves to the executable.
if(NOT QIAO_SANITIZE)
  target_link_options(qiao_shared PRIVATE "LINKER:--no-undefined")
endif()
# The areas again, for their own dependencies (json-c, pcre2, ...) and so
# that the library is relinked when one changes.
target_link_libraries(qiao_shared PRIVATE ${qiao_lib_areas})
target_include_directories(qiao_shared INTERFACE $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include>
                                                 $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
set_target_properties(qiao_shared PROPERTIES
  OUTPUT_NAME qiao
  EXPORT_NAME qiao
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}
  LINK_DEPENDS "${qiao_map};${qiao_symbols_file}")
add_library(qiao::qiao ALIAS qiao_shared)

# Installed plugins are found relative to the executable and to libqiao.so
# (src/device/backend.c), so an installed tree works wherever it is put.
file(RELATIVE_PATH qiao_plugins_from_bin /p/${CMAKE_INSTALL_BINDIR} /p/${QIAO_INSTALL_PLUGINDIR})
file(RELATIVE_PATH qiao_plugins_from_lib /p/${CMAKE_INSTALL_LIBDIR} /p/${QIAO_INSTALL_PLUGINDIR})
target_compile_definitions(qiao_device PRIVATE
  QIAO_PLUGIN_DIR_FROM_BIN="${qiao_plugins_from_bin}"
  QIAO_PLUGIN_DIR_FROM_LIB="${qiao_plugins_from_lib}")
