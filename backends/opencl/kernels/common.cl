/* common.cl: definitions shared by every qiao OpenCL kernel (OpenCL C 1.2,
 * no extensions). The host concatenates the kernel files in the order
 * common, linear, norm_rope, attention, elementwise, select and compiles them
 * once per device with -DWG=<work-group size> (a power of two >= 8).
 *
 * Conventions: every buffer argument comes with an element offset (or, for
 * weights in any dtype, a byte offset) because a qiao_dev_ref may point into
 * the middle of a buffer. Indices that come from device data (token ids,
 * slots, block tables) cannot be validated by the host without a readback, so
 * kernels bounds-check them, clamp (or skip the write) and set err[op] = 1;
 * queue_synchronize reads err and reports the op. */
#ifndef WG
#error "WG (the work-group size) must be defined by the host"
#endif

#define NT 4             /* tokens per matmul work-group: a weight row is read once per NT tokens */
#define MAX_HEAD_DIM 512 /* attention keeps q and the output row in local memory */

/* Op numbers: the index of each op's error flag (qiao_dev_op). */
#define OP_EMBED 0
#define OP_KV_WRITE 4
#define OP_ATTENTION 5
#define OP_MATMUL_EXPERTS 10

/* Weight dtypes (qiao_dev_dtype). */
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_Q8_0 3
#define DT_Q4_0 4

/* A little-endian IEEE half at p (2-byte aligned): vload_half is core
 * OpenCL and needs no cl_khr_fp16. */
float half_at(__global const uchar *p) { return vload_half(0, (__global const half *)p); }

/* Element j of a weight row that starts at byte `row` of w. */
float load_weight(int dtype, __global const uchar *w, ulong row, ulong j) {
  __global const uchar *r = w + row;
  if (dtype == DT_F32) return ((__global const float *)r)[j];
  if (dtype == DT_F16) return vload_half(j, (__global const half *)r);
  if (dtype == DT_BF16) return as_float((uint)((__global const ushort *)r)[j] << 16);
  if (dtype == DT_Q8_0) {
    __global const uchar *blk = r + (j / 32) * 34;
    return half_at(blk) * (float)((__global const char *)blk)[2 + j % 32];
  }
  /* DT_Q4_0: byte i of a block holds element i (low nibble) and i + 16 (high). */
  __global const uchar *blk = r + (j / 32) * 18;
  uint e = (uint)(j % 32);
  uint b = blk[2 + (e & 15)];
  int nib = (int)(e < 16 ? (b & 15) : (b >> 4));
  return half_at(blk) * (float)(nib - 8);
}

/* Tree reduction of red[0..WG) into red[0]; every work-item must call it. */
void reduce_sum(__local float *red, uint lid) {
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] += red[lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}

void reduce_max(__local float *red, uint lid) {
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}
