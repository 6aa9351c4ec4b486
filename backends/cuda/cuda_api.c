/* cuda_api.c: the function table and the plugin's one exported symbol
 * (backends/common/plugin_api.h). */
#include "cuda_internal.h"

PLUGIN_DEFINE_API_1_4(cuq, "cuda", "0.1.0")
