/* make_chat_model OUT.gguf [EOS_ID]: stories260K with a small chat template
 * added, for the chat command's test (shared/ has no model with a template
 * whose vocabulary fits); with EOS_ID, that token is the end of turn instead
 * of stories260K's own, so that a test can make a reply end where it wants. */
#include <stdio.h>
#include <string.h>

#include "format/model_internal.h"
#include "test_util.h"

static const char chat_template[] =
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}";

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) return 2;
  uint32_t eos = argc == 3 ? (uint32_t)strtoul(argv[2], NULL, 10) : 0;
  qiao_model *src = NULL, *m = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &src));
  if (src == NULL) TEST_END();
  CHECK_OK(qiao__model_create(argv[1], "qiao", &m));
  for (uint64_t i = 0; m && i < qiao_model_kv_count(src); i++) {
    const qiao_kv *kv = qiao_model_kv_at(src, i);
    if (strcmp(kv->key, "tokenizer.chat_template") == 0) continue;
    if (argc == 3 && strcmp(kv->key, "tokenizer.eos_ids") == 0) continue;
    CHECK_OK(qiao__model_set_kv(m, kv));
  }
  if (m)
    CHECK_OK(
        qiao__model_set_string(m, "tokenizer.chat_template", chat_template, strlen(chat_template)));
  if (m && argc == 3)
    CHECK_OK(qiao__model_set_array(m, "tokenizer.eos_ids", QIAO_VALUE_U32, 1, &eos));
  for (uint64_t i = 0; m && i < qiao_model_tensor_count(src); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(src, i);
    CHECK_OK(
        qiao__model_add_tensor(m, t->name, t->dtype, t->n_dims, t->shape, t->data, t->n_bytes));
  }
  qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, QIAO_DTYPE_COUNT, false};
  if (m) CHECK_OK(qiao_model_write(m, argv[1], &co));
  qiao_model_close(m);
  qiao_model_close(src);
  TEST_END();
}
