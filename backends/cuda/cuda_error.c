/* cuda_error.c: the backend's error objects, and CUDA / cuBLAS failures
 * turned into them (the error's name, the call that failed, the qiao code). */
#include <cublas_api.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda_internal.h"

/* Returned when even an error object cannot be allocated; never freed. */
static qiao_dev_error out_of_memory_error = {QIAO_DEV_OUT_OF_MEMORY, true,
                                             "cuda: out of host memory"};

qiao_dev_error *cuq__error(qiao_dev_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  qiao_dev_error *e = malloc(sizeof(*e));
  char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (e == NULL || msg == NULL) {
    free(e);
    free(msg);
    return &out_of_memory_error;
  }
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  e->code = code;
  e->is_static = false;
  e->message = msg;
  return e;
}

/* Allocation failures are OUT_OF_MEMORY. Faults of the work itself (illegal
 * address, launch failure, ECC) leave the CUDA context unusable ("sticky"
 * errors): DEVICE_LOST, as are a missing device or driver. Invalid values can
 * only come from a backend bug (arguments are validated first): INTERNAL. */
static qiao_dev_code code_of(cudaError_t err) {
  switch (err) {
  case cudaErrorMemoryAllocation: return QIAO_DEV_OUT_OF_MEMORY;
  case cudaErrorNoDevice:
  case cudaErrorInsufficientDriver:
  case cudaErrorDevicesUnavailable:
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorLaunchTimeout:
  case cudaErrorHardwareStackError:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorInvalidAddressSpace:
  case cudaErrorInvalidPc:
  case cudaErrorECCUncorrectable:
  case cudaErrorAssert:
  case cudaErrorContextIsDestroyed: return QIAO_DEV_DEVICE_LOST;
  default: return QIAO_DEV_INTERNAL;
  }
}

qiao_dev_error *cuq__cuda_error(cudaError_t err, const char *call, const char *what) {
  /* Clear the runtime's last error so that a later launch check does not
   * report it again (sticky errors stay: the context is unusable). */
  (void)cudaGetLastError();
  const char *name = cudaGetErrorName(err), *desc = cudaGetErrorString(err);
  if (what != NULL && *what != '\0')
    return cuq__error(code_of(err), "cuda: %s(%s): %s: %s", call, what, name, desc);
  return cuq__error(code_of(err), "cuda: %s: %s: %s", call, name, desc);
}

qiao_dev_error *cuq__launch_error(cuq_status st, const char *op) {
  if (st.call == NULL) return NULL;
  if (st.cuda_error != 0) return cuq__cuda_error((cudaError_t)st.cuda_error, st.call, op);
  cublasStatus_t cs = (cublasStatus_t)st.cublas_error;
  qiao_dev_code code = cs == CUBLAS_STATUS_ALLOC_FAILED       ? QIAO_DEV_OUT_OF_MEMORY
                       : cs == CUBLAS_STATUS_EXECUTION_FAILED ? QIAO_DEV_DEVICE_LOST
                                                              : QIAO_DEV_INTERNAL;
  return cuq__error(code, "cuda: %s(%s): %s: %s", st.call, op, cublasGetStatusName(cs),
                    cublasGetStatusString(cs));
}

qiao_dev_code cuq__error_code(const qiao_dev_error *error) {
  return error == NULL ? QIAO_DEV_OK : error->code;
}

const char *cuq__error_message(const qiao_dev_error *error) {
  return error == NULL ? "" : error->message;
}

void cuq__error_destroy(qiao_dev_error *error) {
  if (error == NULL || error->is_static) return;
  free(error->message);
  free(error);
}
