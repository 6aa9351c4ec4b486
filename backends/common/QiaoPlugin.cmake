# QiaoPlugin.cmake: how a device plugin is built. Included by each backend's
# CMakeLists.txt (the functions are then defined for the whole project).

# Compiles the shared plugin code (backends/common: errors, argument
# validation) into TARGET, for the plugin called NAME. Also used by tests that
# link a plugin's sources directly.
function(qiao_plugin_common TARGET NAME)
  set(QIAO_PLUGIN_COMMON_DIR ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
  target_sources(${TARGET} PRIVATE ${QIAO_PLUGIN_COMMON_DIR}/plugin_error.c
                                   ${QIAO_PLUGIN_COMMON_DIR}/plugin_validate.c)
  target_include_directories(${TARGET} PRIVATE ${CMAKE_SOURCE_DIR}/include
                                               ${QIAO_PLUGIN_COMMON_DIR})
  target_compile_definitions(${TARGET} PRIVATE QIAO_PLUGIN_NAME="${NAME}")
endfunction()

# qiao_add_plugin(NAME SOURCES...): the target qiao_<NAME>, built as
# libqiao-<NAME>.so at the top of the build tree, where the qiao executable
# finds it (building qiao builds the plugin too). It sees only the public
# header qiao/device.h, its own folder and backends/common, and exports only
# qiao_device_get_api.
function(qiao_add_plugin NAME)
  set(target qiao_${NAME})
  add_library(${target} SHARED ${ARGN})
  qiao_plugin_common(${target} ${NAME})
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  set(map ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/exports.map)
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME qiao-${NAME}
    PREFIX lib
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}
    LINK_DEPENDS ${map})
  # -z nodelete: dlclose leaves the plugin (and the GPU runtime it pulled in:
  # an OpenCL ICD loader and driver, the CUDA runtime) loaded. Those keep
  # threads and exit-time teardown and are not made to be unloaded.
  target_link_options(${target} PRIVATE "LINKER:--version-script=${map}" "LINKER:-z,nodelete")
  # Deferred: tools/ (the qiao target) is configured after backends/. A
  # deferred call expands variables when it runs, so ${target} goes in now.
  cmake_language(EVAL CODE
    "cmake_language(DEFER DIRECTORY [[${CMAKE_SOURCE_DIR}]] CALL add_dependencies qiao ${target})")
endfunction()
