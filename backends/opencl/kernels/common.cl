/* common.cl: definitions shared by every qiao OpenCL kernel (OpenCL C 1.2,
 * no extensions). The host concatenates the kernel files in the order
 * common, linear, norm_rope, attention, latent, elementwise, select and
 * compiles them once per device with -DWG=<work-group size> (a power of two >= 8).
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
#define OP_LATENT_WRITE 12
#define OP_ATTENTION_LATENT 13

/* Weight dtypes (qiao_dev_dtype). */
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_Q8_0 3
#define DT_Q4_0 4
/* (ABI 1.3) GGUF's k-quant and older block types (format.md §4.1). */
#define DT_Q4_K 6
#define DT_Q5_K 7
#define DT_Q6_K 8
#define DT_Q2_K 9
#define DT_Q3_K 10
#define DT_Q4_1 11
#define DT_Q5_0 12
#define DT_Q5_1 13
/* (ABI 1.4) block-scaled FP8 (device.h): an F32 scale, then 128 E4M3FN bytes. */
#define DT_F8_E4M3_B128 14
/* (ABI 1.5) GGUF's non-linear 4-bit types: nibbles index 16 fixed levels. */
#define DT_IQ4_NL 15
#define DT_IQ4_XS 16

/* A little-endian IEEE half at p (2-byte aligned): vload_half is core
 * OpenCL and needs no cl_khr_fp16. */
float half_at(__global const uchar *p) { return vload_half(0, (__global const half *)p); }

/* Element j of a row of a 1.3 block type, computed in format.md §4.1's
 * order (each product exact in f32, one rounding per step). */
float load_weight_1_3(int dtype, __global const uchar *r, ulong j) {
  if (dtype == DT_Q4_1 || dtype == DT_Q5_0 || dtype == DT_Q5_1) {
    uint bytes = dtype == DT_Q4_1 ? 20 : dtype == DT_Q5_0 ? 22 : 24;
    __global const uchar *blk = r + (j / 32) * bytes;
    uint e = (uint)(j % 32), qoff = dtype == DT_Q4_1 ? 4 : dtype == DT_Q5_0 ? 6 : 8;
    uint b = blk[qoff + (e & 15)];
    int q = (int)(e < 16 ? (b & 15) : (b >> 4));
    if (dtype != DT_Q4_1) q += 16 * (int)((blk[qoff - 4 + e / 8] >> (e % 8)) & 1);
    float d = half_at(blk);
    if (dtype == DT_Q5_0) return d * (float)(q - 16);
    return d * (float)q + half_at(blk + 2);
  }
  uint bytes = dtype == DT_Q4_K ? 144 : dtype == DT_Q5_K ? 176 : dtype == DT_Q6_K ? 210
             : dtype == DT_Q2_K ? 84 : 110;
  __global const uchar *b = r + (j / 256) * bytes;
  uint e = (uint)(j % 256), sub = e / 32, l = e % 32, h = e / 128, p = (e % 128) / 32;
  uint s16 = 8 * h + 2 * p + l / 16;
  if (dtype == DT_Q4_K || dtype == DT_Q5_K) {
    __global const uchar *sc = b + 4;
    int scale, mn;
    if (sub < 4) {
      scale = sc[sub] & 63;
      mn = sc[sub + 4] & 63;
    } else {
      scale = (sc[sub + 4] & 15) | ((sc[sub - 4] >> 6) << 4);
      mn = (sc[sub + 4] >> 4) | ((sc[sub] >> 6) << 4);
    }
    uint byte = b[(dtype == DT_Q5_K ? 48 : 16) + 32 * (sub / 2) + l];
    int q = (int)((sub & 1) ? byte >> 4 : byte & 15);
    if (dtype == DT_Q5_K) q += 16 * (int)((b[16 + l] >> sub) & 1);
    return half_at(b) * (float)scale * (float)q - half_at(b + 2) * (float)mn;
  }
  if (dtype == DT_Q6_K) {
    uint byte = b[64 * h + 32 * (p & 1) + l];
    int q = (int)((p < 2 ? byte & 15 : byte >> 4) | (((b[128 + 32 * h + l] >> (2 * p)) & 3) << 4));
    return half_at(b + 208) * (float)((__global const char *)b)[192 + s16] * (float)(q - 32);
  }
  if (dtype == DT_Q2_K) {
    int q = (int)((b[16 + 32 * h + l] >> (2 * p)) & 3);
    return half_at(b + 80) * (float)(b[s16] & 15) * (float)q - half_at(b + 82) * (float)(b[s16] >> 4);
  }
  /* DT_Q3_K */
  int q = (int)((b[32 + 32 * h + l] >> (2 * p)) & 3) - (((b[l] >> sub) & 1) ? 0 : 4);
  int lo = (int)(s16 < 8 ? b[96 + s16] & 15 : b[96 + s16 - 8] >> 4);
  int scale = (lo | (int)(((b[104 + s16 % 4] >> (2 * (s16 / 4))) & 3) << 4)) - 32;
  return half_at(b + 108) * (float)scale * (float)q;
}

/* The value of an E4M3FN byte: sign, 4 exponent bits (bias 7), 3 mantissa
 * bits; exponent 0 is subnormal (m/8 * 2^-6), 0x7F/0xFF are NaN (never
 * stored). Both cases are an integer significand times a power of two, so
 * ldexp gives the value exactly. */
float e4m3_value(uint q) {
  uint e = (q >> 3) & 15, m = q & 7;
  float v = (e == 15 && m == 7) ? NAN : ldexp((float)(e != 0 ? 8 + m : m), (int)max(e, 1u) - 10);
  return (q & 0x80) ? -v : v;
}

/* (ABI 1.4) Element j of an F8_E4M3_B128 row: x = d * e4m3(q), one binary32
 * product. The scale is read bytewise (vload4), so a block needs no 4-byte
 * alignment of its own. */
float load_weight_f8(__global const uchar *r, ulong j) {
  __global const uchar *blk = r + (j / 128) * 132;
  float d = as_float(vload4(0, blk));
  return d * e4m3_value(blk[4 + j % 128]);
}

/* (ABI 1.5) The 16 levels of IQ4_NL and IQ4_XS. */
__constant char iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};

/* Element j of an IQ4_NL row (blocks of 32 in 18 bytes: f16 d, 16 bytes of
 * nibbles as Q4_0's; d * level) or an IQ4_XS row (super-blocks of 256 in
 * 136 bytes: f16 d, u16 scales_h, scales_l[4], 128 bytes of nibbles;
 * sub-block s has the 6-bit scale ls and (d * (ls - 32)) * level), each
 * product exact in f32 (format.md §4.1). */
float load_weight_iq4(int dtype, __global const uchar *r, ulong j) {
  uint e = (uint)(j % 32);
  __global const uchar *qs;
  float a;
  if (dtype == DT_IQ4_NL) {
    __global const uchar *blk = r + (j / 32) * 18;
    a = half_at(blk);
    qs = blk + 2;
  } else {
    __global const uchar *blk = r + (j / 256) * 136;
    uint s = (uint)(j % 256) / 32;
    uint sh = (uint)blk[2] | (uint)blk[3] << 8;
    int ls = (int)(((blk[4 + s / 2] >> (4 * (s % 2))) & 15) | (((sh >> (2 * s)) & 3) << 4));
    a = half_at(blk) * (float)(ls - 32);
    qs = blk + 8 + 16 * s;
  }
  uint b = qs[e & 15];
  return a * (float)iq4_levels[e < 16 ? (b & 15) : (b >> 4)];
}

/* Element j of a weight row that starts at byte `row` of w. */
float load_weight(int dtype, __global const uchar *w, ulong row, ulong j) {
  __global const uchar *r = w + row;
  if (dtype == DT_IQ4_NL || dtype == DT_IQ4_XS) return load_weight_iq4(dtype, r, j);
  if (dtype == DT_F8_E4M3_B128) return load_weight_f8(r, j);
  if (dtype >= DT_Q4_K) return load_weight_1_3(dtype, r, j);
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
