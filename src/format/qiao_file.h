/* The .qiao file layout constants shared by its reader and writer; the
 * format itself is specified in docs/spec/format.md §1-6. */
#ifndef QIAO_QIAO_FILE_H
#define QIAO_QIAO_FILE_H

#include <stdint.h>

#define QIAO__FILE_MAGIC "QIAO"
#define QIAO__FILE_MAJOR 1u
#define QIAO__FILE_MINOR 0u
#define QIAO__FILE_HEADER_SIZE 96u
/* Alignment of every tensor's data (writers); readers accept any power of
 * two in [QIAO__FILE_MIN_ALIGNMENT, QIAO__FILE_MAX_ALIGNMENT]. */
#define QIAO__FILE_ALIGNMENT 64u
#define QIAO__FILE_MIN_ALIGNMENT 8u
#define QIAO__FILE_MAX_ALIGNMENT (1u << 20)
/* The data section starts at a multiple of this, so tensors can be mapped
 * straight from the file. */
#define QIAO__FILE_DATA_ALIGNMENT 4096u
/* Flag bits 0..15 are "required": a reader refuses a file with one it does
 * not know. Bits 16..31 may be ignored. No flag is defined in 1.0. */
#define QIAO__FILE_REQUIRED_FLAGS 0x0000ffffu

/* Byte offsets of the header fields. */
enum {
  QIAO__H_MAGIC = 0,
  QIAO__H_MAJOR = 4,
  QIAO__H_MINOR = 6,
  QIAO__H_FLAGS = 8,
  QIAO__H_HEADER_SIZE = 12,
  QIAO__H_ALIGNMENT = 16,
  QIAO__H_RESERVED0 = 20,
  QIAO__H_N_KV = 24,
  QIAO__H_N_TENSORS = 32,
  QIAO__H_KV_OFFSET = 40,
  QIAO__H_TABLE_OFFSET = 48,
  QIAO__H_TABLE_END = 56,
  QIAO__H_DATA_OFFSET = 64,
  QIAO__H_DATA_SIZE = 72,
  QIAO__H_HASH = 80,
  QIAO__H_RESERVED1 = 88
};

/* XXH3-64 (seed 0) of bytes [0, size) with the hash field (bytes 80..87)
 * taken as zero; size >= QIAO__FILE_HEADER_SIZE. */
uint64_t qiao__qiao_header_hash(const uint8_t *bytes, uint64_t size);

#endif
