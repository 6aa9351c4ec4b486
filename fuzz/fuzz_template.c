/* libFuzzer target for the template interpreter: the input is a template,
 * optionally followed by a NUL byte and the JSON variables (a small chat is
 * used when there are none). It is compiled and, when that works, rendered
 * under small budgets. Nothing may crash, leak, hang or allocate without
 * bound; every failure must be a status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qiao/template.h"

static const char default_vars[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Hi <b>\\u00e9</b>\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>\\nok\","
    "  \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, "
    "null]}}}]},"
    " {\"role\": \"tool\", \"content\": \"42\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *src = (const char *)data;
  size_t src_len = size;
  const char *vars = default_vars;
  size_t vars_len = sizeof(default_vars) - 1;
  const uint8_t *nul = memchr(data, 0, size);
  if (nul != NULL) {
    src_len = (size_t)(nul - data);
    vars = (const char *)nul + 1;
    vars_len = size - src_len - 1;
  }
  qiao_template *t = NULL;
  qiao_status *st = qiao_template_compile(src, src_len, &t);
  if (st == NULL) {
    qiao_template_limits limits = {
        .max_steps = 200000, .max_output = 1 << 20, .max_memory = 32 << 20, .max_depth = 128};
    char *out = NULL;
    size_t out_len = 0;
    st = qiao_template_render(t, vars, vars_len, &limits, &out, &out_len);
    if (st == NULL && (out == NULL || out[out_len] != '\0')) abort();
    free(out);
  }
  qiao_status_free(st);
  qiao_template_destroy(t);
  return 0;
}
