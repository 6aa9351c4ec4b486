/* qiao/version.h: the version of the qiao library.
 *
 * The library follows semantic versioning (docs/api.md, "Versioning"): the
 * major version is the soname (libqiao.so.MAJOR) and changes only when a
 * function is removed or changes its signature or meaning; a minor version
 * adds functions or appends fields to option structs (read within
 * struct_size); a patch version changes no interface. CMake checks that these
 * numbers equal the project's version. */
#ifndef QIAO_VERSION_H
#define QIAO_VERSION_H

#define QIAO_VERSION_MAJOR 0
#define QIAO_VERSION_MINOR 4
#define QIAO_VERSION_PATCH 1
#define QIAO_VERSION_STRING "0.4.1"

#ifdef __cplusplus
extern "C" {
#endif

/* The version of the library actually loaded ("0.1.0"), which may be newer
 * than the QIAO_VERSION_STRING a program was compiled with. */
const char *qiao_version(void);

#ifdef __cplusplus
}
#endif
#endif
