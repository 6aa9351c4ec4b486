/* cuda_error.c: CUDA and cuBLAS failures turned into errors (the error's name, the call that
 * failed, the qiao code). */
#include <cublas_api.h>

#include "cuda_internal.h"

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
    return plugin__error(code_of(err), "cuda: %s(%s): %s: %s", call, what, name, desc);
  return plugin__error(code_of(err), "cuda: %s: %s: %s", call, name, desc);
}

qiao_dev_error *cuq__launch_error(cuq_status st, const char *op) {
  if (st.call == NULL) return NULL;
  if (st.cuda_error != 0) return cuq__cuda_error((cudaError_t)st.cuda_error, st.call, op);
  cublasStatus_t cs = (cublasStatus_t)st.cublas_error;
  qiao_dev_code code = cs == CUBLAS_STATUS_ALLOC_FAILED       ? QIAO_DEV_OUT_OF_MEMORY
                       : cs == CUBLAS_STATUS_EXECUTION_FAILED ? QIAO_DEV_DEVICE_LOST
                                                              : QIAO_DEV_INTERNAL;
  return plugin__error(code, "cuda: %s(%s): %s: %s", st.call, op, cublasGetStatusName(cs),
                       cublasGetStatusString(cs));
}
