/* cuda_api.c: the function table and the plugin's one exported symbol. */
#include "cuda_internal.h"

static const qiao_dev_api api = {
    .struct_size = sizeof(qiao_dev_api),
    .abi_major = QIAO_DEVICE_ABI_MAJOR,
    .abi_minor = QIAO_DEVICE_ABI_MINOR,
    .name = "cuda",
    .version = "0.1.0",
    .error_code = plugin__error_code,
    .error_message = plugin__error_message,
    .error_destroy = plugin__error_destroy,
    .backend_open = cuq__backend_open,
    .backend_close = cuq__backend_close,
    .device_count = cuq__device_count,
    .device_get_properties = cuq__device_get_properties,
    .device_open = cuq__device_open,
    .device_close = cuq__device_close,
    .op_supported = cuq__op_supported,
    .buffer_create = cuq__buffer_create,
    .buffer_destroy = cuq__buffer_destroy,
    .buffer_wrap_host = NULL, /* no QIAO_DEV_FLAG_HOST_MEMORY: weights are uploaded once */
    .queue_create = cuq__queue_create,
    .queue_destroy = cuq__queue_destroy,
    .queue_synchronize = cuq__queue_synchronize,
    .upload = cuq__upload,
    .download = cuq__download,
    .copy = cuq__copy,
    .embed = cuq__embed,
    .matmul = cuq__matmul,
    .rmsnorm = cuq__rmsnorm,
    .rope = cuq__rope,
    .kv_write = cuq__kv_write,
    .attention = cuq__attention,
    .swiglu = cuq__swiglu,
    .add = cuq__add,
    .argmax = cuq__argmax,
    .moe_gate = cuq__moe_gate,
    .matmul_experts = cuq__matmul_experts,
    .moe_combine = cuq__moe_combine,
};

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  return &api;
}
