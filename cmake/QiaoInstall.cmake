# QiaoInstall.cmake: what `cmake --install` puts in place (README, "Install"):
#   bin/qiao                        the command (areas linked in statically)
#   lib/libqiao.so.MAJOR            the library for other programs (docs/api.md)
#   lib/qiao/libqiao-<name>.so      device plugins, found there by default
#   include/qiao/*.h                the public headers
#   lib/pkgconfig/qiao.pc           for pkg-config
#   lib/cmake/qiao/                 for find_package(qiao): the target qiao::qiao
#   lib/systemd/system/qiao.service and etc/qiao/qiao.conf, for `qiao serve`
# Included from the top-level CMakeLists.txt after every target exists.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS qiao RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS qiao_shared EXPORT qiaoTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
foreach(plugin qiao_cpu_plugin qiao_opencl qiao_cuda)
  if(TARGET ${plugin})
    install(TARGETS ${plugin} LIBRARY DESTINATION ${QIAO_INSTALL_PLUGINDIR})
  endif()
endforeach()

# pkg-config: written at install time with the prefix installed to (--prefix,
# /usr in the Debian package), so that a system install's flags name /usr/include
# as such (pkg-config then drops them). A tree moved elsewhere, or unpacked with
# dpkg -x, is used with `pkg-config --define-prefix`.
configure_file(${CMAKE_CURRENT_LIST_DIR}/qiao.pc.in ${CMAKE_BINARY_DIR}/qiao.pc.in @ONLY)
# (The file is written under a name of its own per destination: installs to
# several prefixes may run at once, as the tests do.)
install(CODE "
  file(READ [[${CMAKE_BINARY_DIR}/qiao.pc.in]] pc)
  string(REPLACE [[%PREFIX%]] \"\${CMAKE_INSTALL_PREFIX}\" pc \"\${pc}\")
  string(MD5 dest \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}\")
  set(pc_dir \"${CMAKE_BINARY_DIR}/pkgconfig/\${dest}\")
  file(WRITE \"\${pc_dir}/qiao.pc\" \"\${pc}\")
  file(INSTALL DESTINATION \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig\" TYPE FILE
       FILES \"\${pc_dir}/qiao.pc\")
  file(REMOVE_RECURSE \"\${pc_dir}\")")

# find_package(qiao): qiao::qiao, the shared library with its include path.
set(qiao_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/qiao)
install(EXPORT qiaoTargets NAMESPACE qiao:: DESTINATION ${qiao_cmake_dir})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/qiaoConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/qiaoConfig.cmake INSTALL_DESTINATION ${qiao_cmake_dir})
# Before 1.0 every minor version may break the API (semantic versioning).
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(qiao_compat SameMinorVersion)
else()
  set(qiao_compat SameMajorVersion)
endif()
write_basic_package_version_file(${CMAKE_BINARY_DIR}/qiaoConfigVersion.cmake
                                 COMPATIBILITY ${qiao_compat})
install(FILES ${CMAKE_BINARY_DIR}/qiaoConfig.cmake ${CMAKE_BINARY_DIR}/qiaoConfigVersion.cmake
        DESTINATION ${qiao_cmake_dir})

# The service: a systemd unit and its settings (packaging/README.md). The
# unit names /usr/bin/qiao, where the Debian package puts it.
install(FILES ${CMAKE_SOURCE_DIR}/packaging/qiao.service DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/qiao.conf DESTINATION ${CMAKE_INSTALL_SYSCONFDIR}/qiao)

# The Python bindings (ctypes, no compiled code) where Debian's python3 looks,
# with the way from the package to libqiao.so written beside them.
set(qiao_python_dir lib/python3/dist-packages)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/python/qiao DESTINATION ${qiao_python_dir}
        FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
file(RELATIVE_PATH qiao_py_to_lib /p/${qiao_python_dir}/qiao /p/${CMAKE_INSTALL_LIBDIR})
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/python/_installed.py CONTENT
     "# Written by cmake/QiaoInstall.cmake: where libqiao.so is, from this folder.\nLIBRARY = \"${qiao_py_to_lib}/libqiao.so.${PROJECT_VERSION_MAJOR}\"\n")
install(FILES ${CMAKE_BINARY_DIR}/python/_installed.py DESTINATION ${qiao_python_dir}/qiao)

# The documents the unit's Documentation= and the package point to.
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${CMAKE_SOURCE_DIR}/docs/api.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/packaging/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}
        RENAME service.md)
