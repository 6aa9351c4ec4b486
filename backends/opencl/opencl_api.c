/* opencl_api.c: the function table and the plugin's one exported symbol. */
#include "opencl_internal.h"

static const qiao_dev_api api = {
    .struct_size = sizeof(qiao_dev_api),
    .abi_major = QIAO_DEVICE_ABI_MAJOR,
    .abi_minor = QIAO_DEVICE_ABI_MINOR,
    .name = "opencl",
    .version = "0.1.0",
    .error_code = plugin__error_code,
    .error_message = plugin__error_message,
    .error_destroy = plugin__error_destroy,
    .backend_open = ocl__backend_open,
    .backend_close = ocl__backend_close,
    .device_count = ocl__device_count,
    .device_get_properties = ocl__device_get_properties,
    .device_open = ocl__device_open,
    .device_close = ocl__device_close,
    .op_supported = ocl__op_supported,
    .buffer_create = ocl__buffer_create,
    .buffer_destroy = ocl__buffer_destroy,
    .buffer_wrap_host = NULL, /* no QIAO_DEV_FLAG_HOST_MEMORY */
    .queue_create = ocl__queue_create,
    .queue_destroy = ocl__queue_destroy,
    .queue_synchronize = ocl__queue_synchronize,
    .upload = ocl__upload,
    .download = ocl__download,
    .copy = ocl__copy,
    .embed = ocl__embed,
    .matmul = ocl__matmul,
    .rmsnorm = ocl__rmsnorm,
    .rope = ocl__rope,
    .kv_write = ocl__kv_write,
    .attention = ocl__attention,
    .swiglu = ocl__swiglu,
    .add = ocl__add,
    .argmax = ocl__argmax,
    .moe_gate = ocl__moe_gate,
    .matmul_experts = ocl__matmul_experts,
    .moe_combine = ocl__moe_combine,
};

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  return &api;
}
