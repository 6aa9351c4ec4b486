/* Internal: the llama2.c tokenizer file (tok.bin), parsed from memory. */
#ifndef QIAO_IMPORT_LLAMA2C_H
#define QIAO_IMPORT_LLAMA2C_H

#include <stdint.h>

#include "format/model_internal.h"

/* Largest tok.bin accepted (the 32000-token LLaMA 2 vocab is ~0.5 MB). */
#define QIAO__LLAMA2C_MAX_TOKENIZER_BYTES (64u << 20)

/* Parses tok.bin bytes (int32 max_token_length, then per token: f32 score,
 * int32 length, bytes) holding exactly `vocab_size` tokens and sets the
 * tokenizer.* keys of a SentencePiece vocab on `model`: tokens, scores,
 * token_types (byte tokens <0xXX> at ids 3..258, <unk> 0, <s> 1, </s> 2),
 * bos 1, eos [2], unk 0, add_bos, add_space_prefix. `name` is used in
 * messages. */
qiao_status *qiao__llama2c_add_tokenizer(qiao_model *model, const uint8_t *data, uint64_t size,
                                         const char *name, uint32_t vocab_size);

#endif
