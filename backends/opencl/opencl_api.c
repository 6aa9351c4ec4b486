/* opencl_api.c: the function table and the plugin's one exported symbol
 * (backends/common/plugin_api.h). */
#include "opencl_internal.h"

PLUGIN_DEFINE_API_1_4(ocl, "opencl", "0.1.0")
