/* Internal: importers that turn standalone tokenizer files into the
 * canonical tokenizer.* metadata of docs/spec/format.md 7.3. Called by the
 * Hugging Face importer and by qiao_tokenizer_open(). Each sets the keys on
 * `model` (which must not hold tokenizer.* keys yet) and fails with an error
 * naming the file and the field. */
#ifndef QIAO_IMPORT_TOKENIZER_H
#define QIAO_IMPORT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "format/model_internal.h"

/* A Hugging Face tokenizer.json (byte-level BPE, or SentencePiece-style BPE
 * with byte fallback). `dir_or_null`: the folder whose tokenizer_config.json
 * (added_tokens_decoder, bos/eos tokens, add_bos_token, chat_template) is
 * read when present. Besides the keys of 7.3 it may set
 * tokenizer.pre = "regex" with tokenizer.pre_regex (an unknown Split regex)
 * and tokenizer.ignore_merges (bool). */
qiao_status *qiao__import_tokenizer_json(qiao_model *model, const char *tokenizer_json_path,
                                         const char *dir_or_null);

/* The same from memory: `config` (tokenizer_config.json text) may be NULL.
 * `name` is used in messages. */
qiao_status *qiao__import_tokenizer_json_buffer(qiao_model *model, const char *json, size_t len,
                                                const char *config, size_t config_len,
                                                const char *name);

/* A SentencePiece tokenizer.model (ModelProto protobuf) of a BPE model. */
qiao_status *qiao__import_spm_model(qiao_model *model, const char *tokenizer_model_path);
qiao_status *qiao__import_spm_model_buffer(qiao_model *model, const uint8_t *data, uint64_t size,
                                           const char *name);

#endif
