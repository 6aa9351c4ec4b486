/* cpu_backend.h: the built-in CPU backend, the reference implementation of
 * the device ABI (include/qiao/device.h) that every other backend is measured
 * against. The runtime links it in statically; libqiao-cpu.so exports the
 * same table through qiao_device_get_api.
 *
 * Environment: QIAO_CPU_ISA=auto|scalar|avx2|avx512 picks the kernels when a
 * device is opened (default auto = the best the processor supports; asking
 * for one it lacks makes device_open fail with QIAO_DEV_UNSUPPORTED). The
 * portable scalar path exists on every architecture. */
#ifndef QIAO_CPU_BACKEND_H
#define QIAO_CPU_BACKEND_H

#include "qiao/device.h"

/* The function table; static for the life of the process. */
const qiao_dev_api *qiao_cpu_get_api(void);

#endif
