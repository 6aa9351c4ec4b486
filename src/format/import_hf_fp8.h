/* Internal: FP8 checkpoints in a Hugging Face directory (import_hf_fp8.c). */
#ifndef QIAO_IMPORT_HF_FP8_H
#define QIAO_IMPORT_HF_FP8_H

#include "format/import_hf_internal.h"

/* Pairs every F8_E4M3 tensor `X.weight` of `w` with its block scales
 * `X.weight_scale_inv` (F32, BF16 or F16, shape (ceil(rows/128),
 * cols/128)) and turns it, in model memory, into an f8_e4m3_b128 tensor
 * (format.md §4.2); the scale tensors then leave the table. Checks config.json's
 * quantization_config. Any NaN code, a missing, misshaped or non-finite
 * scale, rows that are not whole blocks of 128, or a scale without its
 * weight is an error naming the tensor. Does nothing when the directory
 * holds no F8_E4M3 tensor and no scale. */
qiao_status *qiao__hf_fp8_pair(qiao_model *model, const char *dir, hf_weights *w);

#endif
