/* cpu_backend.h: the built-in CPU backend, the reference implementation of
 * the device ABI (include/qiao/device.h) that every other backend is measured
 * against. The runtime links it in statically; libqiao-cpu.so exports the
 * same table through qiao_device_get_api.
 *
 * Environment: QIAO_CPU_ISA=auto|scalar|avx2|avx512 picks the kernels when a
 * device is opened (default auto = the best the processor supports; asking
 * for one it lacks makes device_open fail with QIAO_DEV_UNSUPPORTED). The
 * portable scalar path exists on every architecture.
 *
 * Batch-invariant mode (device ABI 1.1): every device claims
 * QIAO_DEV_FLAG_BATCH_INVARIANT; opened with QIAO_DEV_OPEN_BATCH_INVARIANT,
 * matmul and matmul_experts sum every row in one order per (kernel set,
 * dtype, k), whatever the number of rows (cpu_matmul.c); the other ops
 * always do. Results are invariant for a given QIAO_CPU_ISA; two kernel sets
 * give different (equally accurate) bits. */
#ifndef QIAO_CPU_BACKEND_H
#define QIAO_CPU_BACKEND_H

#include "qiao/device.h"

/* The function table; static for the life of the process. */
const qiao_dev_api *qiao_cpu_get_api(void);

#endif
