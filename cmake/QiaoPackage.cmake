# QiaoPackage.cmake: the Debian package, qiao_<version>_<arch>.deb, made by
# `cpack -G DEB` in a build folder (packaging/README.md). It holds what
# `cmake --install` installs, under /usr, with the service's settings moved to
# /etc/qiao/ (a conffile) and maintainer scripts that create the user qiao
# and enable the unit. Dependencies come from dpkg-shlibdeps: the Debian
# packages whose libraries qiao and its plugins link.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME qiao)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "qiao maintainers <qiao@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "vendor-neutral LLM runtime: library, command and server")
set(CPACK_PACKAGE_DESCRIPTION
    "qiao runs large language models (GGUF, .qiao, Hugging Face, llama2.c) on CPU, OpenCL and CUDA devices. This package holds the qiao command, libqiao with its headers, pkg-config and CMake files, the device plugins, Python bindings and a hardened systemd unit for `qiao serve`.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# postinst creates the user with useradd, from the package passwd.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, python3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "python3-numpy, pocl-opencl-icd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/packaging/deb/postinst ${CMAKE_SOURCE_DIR}/packaging/deb/prerm
    ${CMAKE_SOURCE_DIR}/packaging/deb/postrm ${CMAKE_SOURCE_DIR}/packaging/deb/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# /usr/etc/qiao -> /etc/qiao in the staged tree, before it is packed.
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_SOURCE_DIR}/cmake/QiaoPackageEtc.cmake)
include(CPack)
