/* The version of the library, for programs that load it at run time. */
#include "qiao/version.h"

const char *qiao_version(void) {
  return QIAO_VERSION_STRING;
}
