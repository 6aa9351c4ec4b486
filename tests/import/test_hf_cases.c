/* Hugging Face directory cases built in temporary directories: sharded
 * weights (equal to the single file), generation_config.json, both RoPE
 * spellings, and the errors: missing files, unknown architectures, unsafe
 * or inconsistent shard indexes, unknown tensors, missing experts. */
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/import_safetensors.h"
#include "import/safetensors_writer.h"
#include "qiao/model.h"
#include "test_util.h"

static char stories_config[8192];
static char *stories_st;
static size_t stories_st_len;
static qiao_st_table stories_table;

static void write_text(const char *dir, const char *file, const char *text) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  st_write_file(path, text, strlen(text));
}

static void write_bytes(const char *dir, const char *file, const void *data, size_t len) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", dir, file);
  st_write_file(path, data, len);
}

static char *make_dir(void) {
  static char dirs[32][64];
  static int n;
  snprintf(dirs[n], sizeof(dirs[n]), "/tmp/qiao-import-XXXXXX");
  if (mkdtemp(dirs[n]) == NULL) {
    perror("mkdtemp");
    exit(1);
  }
  return dirs[n++];
}

static void remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d == NULL) return;
  struct dirent *e;
  char path[4096];
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

/* `text` with the first `from` replaced by `to` (static buffer). */
static const char *replace(const char *text, const char *from, const char *to) {
  static char out[16384];
  const char *p = strstr(text, from);
  if (p == NULL) {
    fprintf(stderr, "replace: '%s' not found\n", from);
    exit(1);
  }
  snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
  return out;
}

static qiao_status *open_dir(const char *dir, qiao_model **out) {
  return qiao_model_open(dir, NULL, out);
}

static qiao_status *open_and_close(const char *dir) {
  qiao_model *m = NULL;
  qiao_status *st = open_dir(dir, &m);
  if (st == NULL) st = qiao_model_validate(m);
  qiao_model_close(m);
  return st;
}

/* The stories260K tensors [from, to) as a safetensors file. */
static uint8_t *stories_subset(uint64_t from, uint64_t to, size_t *len) {
  st_entry entries[64];
  size_t n = 0;
  for (uint64_t i = from; i < to; i++) {
    const qiao_st_tensor *t = &stories_table.tensors[i];
    entries[n] = (st_entry){t->name, "F32", (int)t->n_dims, {0}, t->data, t->n_bytes};
    memcpy(entries[n].shape, t->shape, sizeof(t->shape));
    n++;
  }
  return st_write(entries, n, len);
}

static void test_sharded(void) {
  char *dir = make_dir();
  uint64_t half = stories_table.count / 2;
  size_t len1, len2;
  uint8_t *a = stories_subset(0, half, &len1),
          *b = stories_subset(half, stories_table.count, &len2);
  write_bytes(dir, "model-00001-of-00002.safetensors", a, len1);
  write_bytes(dir, "model-00002-of-00002.safetensors", b, len2);
  st_buf index = {0};
  st_buf_printf(&index, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
  for (uint64_t i = 0; i < stories_table.count; i++)
    st_buf_printf(&index, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
                  stories_table.tensors[i].name, i < half ? 1 : 2);
  st_buf_printf(&index, "}}");
  write_text(dir, "model.safetensors.index.json", (const char *)index.data);
  write_text(dir, "config.json", stories_config);
  write_text(dir, "generation_config.json",
             "{\"bos_token_id\": 1, \"eos_token_id\": [7, 2], \"temperature\": 0.6, "
             "\"top_p\": 0.9, \"top_k\": 20, \"do_sample\": true}");

  qiao_model *sharded = NULL, *single = NULL;
  CHECK_OK(open_dir(dir, &sharded));
  CHECK_OK(open_dir(test_shared_path("models/stories260K/hf"), &single));
  if (sharded && single) {
    CHECK_OK(qiao_model_validate(sharded));
    CHECK(qiao_model_tensor_count(sharded) == qiao_model_tensor_count(single));
    for (uint64_t i = 0; i < qiao_model_tensor_count(single); i++) {
      const qiao_tensor *t = qiao_model_tensor_at(single, i);
      const qiao_tensor *u = qiao_model_tensor_find(sharded, t->name);
      CHECK(u != NULL && u->n_bytes == t->n_bytes && memcmp(u->data, t->data, t->n_bytes) == 0);
    }
    float temp = 0, top_p = 0;
    uint32_t top_k = 0;
    CHECK_OK(qiao_model_get_f32(sharded, "generation.temperature", &temp));
    CHECK_OK(qiao_model_get_f32(sharded, "generation.top_p", &top_p));
    CHECK_OK(qiao_model_get_u32(sharded, "generation.top_k", &top_k));
    CHECK(temp == 0.6f && top_p == 0.9f && top_k == 20);
    const qiao_kv *eos = qiao_model_kv_find(sharded, "tokenizer.eos_ids");
    CHECK(eos != NULL && eos->type == QIAO_VALUE_ARRAY && eos->array_len == 2);
    if (eos && eos->array_len == 2)
      CHECK(((const uint32_t *)eos->v.array)[0] == 7 && ((const uint32_t *)eos->v.array)[1] == 2);
  }
  qiao_model_close(sharded);
  qiao_model_close(single);

  /* A shard name that leaves the directory. */
  const char *text = (const char *)index.data;
  write_text(dir, "model.safetensors.index.json",
             replace(text, "\"model-00001-of-00002.safetensors\"",
                     "\"../model-00001-of-00002.safetensors\""));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  /* A tensor indexed under the wrong shard. */
  write_text(dir, "model.safetensors.index.json",
             replace(text, "\"model-00001-of-00002.safetensors\"",
                     "\"model-00002-of-00002.safetensors\""));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  /* An indexed tensor that no shard holds. */
  write_text(
      dir, "model.safetensors.index.json",
      replace(text, "\"weight_map\": {",
              "\"weight_map\": {\"model.extra.weight\": \"model-00001-of-00002.safetensors\", "));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  /* A shard that does not exist. */
  write_text(dir, "model.safetensors.index.json",
             replace(text, "\"model-00001-of-00002.safetensors\"",
                     "\"model-00009-of-00002.safetensors\""));
  CHECK_ERR(open_and_close(dir), QIAO_NOT_FOUND);
  free(index.data);
  free(a);
  free(b);
  remove_dir(dir);
}

/* A directory holding stories260K's weights and `config`. */
static char *stories_dir(const char *config) {
  char *dir = make_dir();
  write_bytes(dir, "model.safetensors", stories_st, stories_st_len);
  write_text(dir, "config.json", config);
  return dir;
}

static void test_config_cases(void) {
  char *dir;
  /* Unknown architecture: refused by name. */
  dir = stories_dir(replace(stories_config, "LlamaForCausalLM", "GPT2LMHeadModel"));
  qiao_model *m = NULL;
  qiao_status *st = open_dir(dir, &m);
  CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED &&
        strstr(qiao_status_message(st), "GPT2LMHeadModel") != NULL);
  qiao_status_free(st);
  remove_dir(dir);

  /* auto_map names code: ignored, never acted on. */
  dir = stories_dir(
      replace(stories_config, "\"model_type\"",
              "\"auto_map\": {\"AutoModelForCausalLM\": \"evil.Model\"}, \"model_type\""));
  CHECK_OK(open_and_close(dir));
  remove_dir(dir);

  /* Published spelling: rope_theta and rope_scaling at the top level. */
  dir =
      stories_dir(replace(stories_config, "\"rope_theta\": 10000.0",
                          "\"rope_theta\": 500000.0, \"rope_scaling\": {\"rope_type\": \"llama3\", "
                          "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
                          "\"original_max_position_embeddings\": 8192}"));
  m = NULL;
  CHECK_OK(open_dir(dir, &m));
  if (m) {
    qiao_hparams hp;
    CHECK_OK(qiao_model_get_hparams(m, &hp));
    CHECK(hp.rope_theta == 500000.0f && hp.rope_scaling == QIAO_ROPE_SCALING_LLAMA3);
    CHECK(hp.rope_factor == 8.0f && hp.rope_original_context == 8192);
  }
  qiao_model_close(m);
  remove_dir(dir);

  /* Unsupported scaling, bad head counts, mlp_bias. */
  dir = stories_dir(
      replace(stories_config, "\"rope_theta\": 10000.0",
              "\"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}"));
  CHECK_ERR(open_and_close(dir), QIAO_UNSUPPORTED);
  remove_dir(dir);
  dir = stories_dir(
      replace(stories_config, "\"num_key_value_heads\": 4", "\"num_key_value_heads\": 3"));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
  dir = stories_dir(
      replace(stories_config, "\"num_attention_heads\": 8", "\"num_attention_heads\": 0"));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
  dir = stories_dir(replace(stories_config, "\"mlp_bias\": false", "\"mlp_bias\": true"));
  CHECK_ERR(open_and_close(dir), QIAO_UNSUPPORTED);
  remove_dir(dir);
  dir = stories_dir(replace(stories_config, "\"hidden_size\": 64", "\"hidden_size\": \"64\""));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
  /* Fewer layers in config.json than in the weights. */
  dir =
      stories_dir(replace(stories_config, "\"num_hidden_layers\": 5", "\"num_hidden_layers\": 4"));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
  /* More layers than the weights: validate finds the missing tensors. */
  dir =
      stories_dir(replace(stories_config, "\"num_hidden_layers\": 5", "\"num_hidden_layers\": 6"));
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
  /* Not JSON. */
  dir = stories_dir("{\"architectures\": [\"LlamaForCausalLM\"],");
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
}

static void test_missing_files(void) {
  char *dir = make_dir();
  CHECK_ERR(open_and_close(dir), QIAO_NOT_FOUND); /* no config.json */
  write_text(dir, "config.json", stories_config);
  CHECK_ERR(open_and_close(dir), QIAO_NOT_FOUND); /* no weights */
  write_text(dir, "pytorch_model.bin", "PK\x03\x04");
  CHECK_ERR(open_and_close(dir), QIAO_UNSUPPORTED); /* pickle only */
  remove_dir(dir);
}

static void test_tensor_cases(void) {
  /* An unknown tensor is refused by name rather than dropped. */
  char *dir = make_dir();
  write_text(dir, "config.json", stories_config);
  float bias[64] = {0};
  st_entry extra = {"model.layers.0.self_attn.o_proj.bias", "F32", 1, {64}, bias, sizeof(bias)};
  size_t len;
  uint8_t *one = st_write(&extra, 1, &len);
  /* Sharded: the stories weights plus a second shard with the extra. */
  write_bytes(dir, "a.safetensors", stories_st, stories_st_len);
  write_bytes(dir, "b.safetensors", one, len);
  st_buf index = {0};
  st_buf_printf(&index, "{\"weight_map\": {\"%s\": \"b.safetensors\"", extra.name);
  for (uint64_t i = 0; i < stories_table.count; i++)
    st_buf_printf(&index, ", \"%s\": \"a.safetensors\"", stories_table.tensors[i].name);
  st_buf_printf(&index, "}}");
  write_text(dir, "model.safetensors.index.json", (const char *)index.data);
  qiao_model *m = NULL;
  qiao_status *st = open_dir(dir, &m);
  CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED &&
        strstr(qiao_status_message(st), "o_proj.bias") != NULL);
  qiao_status_free(st);
  free(index.data);
  free(one);
  remove_dir(dir);

  /* qwen3_moe with one expert missing. */
  size_t moe_len;
  char *moe =
      test_read_file(test_shared_path("reference/tiny/qwen3_moe/model.safetensors"), &moe_len);
  char *config = test_read_file(test_shared_path("reference/tiny/qwen3_moe/config.json"), NULL);
  qiao_st_table table;
  CHECK_OK(qiao__st_parse((const uint8_t *)moe, moe_len, "qwen3_moe", &table));
  st_entry *entries = calloc(table.count, sizeof(*entries));
  size_t n = 0;
  for (uint64_t i = 0; i < table.count; i++) {
    const qiao_st_tensor *t = &table.tensors[i];
    if (strcmp(t->name, "model.layers.1.mlp.experts.5.up_proj.weight") == 0) continue;
    entries[n] = (st_entry){t->name, "F32", (int)t->n_dims, {0}, t->data, t->n_bytes};
    memcpy(entries[n].shape, t->shape, sizeof(t->shape));
    n++;
  }
  uint8_t *fewer = st_write(entries, n, &len);
  dir = make_dir();
  write_text(dir, "config.json", config);
  write_bytes(dir, "model.safetensors", fewer, len);
  CHECK_ERR(open_and_close(dir), QIAO_MALFORMED);
  remove_dir(dir);
  free(fewer);
  free(entries);
  qiao__st_table_free(&table);
  free(config);
  free(moe);
}

/* tokenizer.json + tokenizer_config.json are imported (by the tokenizer
 * importer); eos ids merge the tokenizer's, generation_config's and
 * config.json's. The Qwen3 tokenizer files are linked beside the tiny qwen3
 * weights (the vocab sizes differ, so this does not validate). */
static void test_tokenizer_files(void) {
  char *dir = make_dir();
  char src[PATH_MAX], dst[4096];
  const char *files[][2] = {{"tokenizers/qwen3/tokenizer.json", "tokenizer.json"},
                            {"tokenizers/qwen3/tokenizer_config.json", "tokenizer_config.json"},
                            {"reference/tiny/qwen3/model.safetensors", "model.safetensors"},
                            {"reference/tiny/qwen3/config.json", "config.json"}};
  for (int i = 0; i < 4; i++) {
    CHECK(realpath(test_shared_path(files[i][0]), src) != NULL);
    snprintf(dst, sizeof(dst), "%s/%s", dir, files[i][1]);
    CHECK(symlink(src, dst) == 0);
  }
  write_text(dir, "generation_config.json", "{\"eos_token_id\": [151645, 151643]}");
  qiao_model *m = NULL;
  CHECK_OK(open_dir(dir, &m));
  if (m) {
    const qiao_kv *tokens = qiao_model_kv_find(m, "tokenizer.tokens");
    CHECK(tokens != NULL && tokens->array_len >= 151643);
    qiao_string model_name;
    CHECK_OK(qiao_model_get_string(m, "tokenizer.model", &model_name));
    CHECK(model_name.len == 3 && memcmp(model_name.data, "bpe", 3) == 0);
    const qiao_kv *eos = qiao_model_kv_find(m, "tokenizer.eos_ids");
    CHECK(eos != NULL && eos->array_len >= 2);
    if (eos != NULL) {
      const uint32_t *ids = eos->v.array;
      bool has_645 = false, has_643 = false;
      for (uint64_t i = 0; i < eos->array_len; i++) {
        has_645 |= ids[i] == 151645;
        has_643 |= ids[i] == 151643;
      }
      CHECK(has_645 && has_643);
    }
  }
  qiao_model_close(m);
  remove_dir(dir);
}

/* The stories weights as a directory with `st` as model.safetensors and
 * `config`; returns the opened model (validated) or NULL. */
static qiao_model *open_variant(const uint8_t *st, size_t len, const char *config) {
  char *dir = make_dir();
  write_bytes(dir, "model.safetensors", st, len);
  write_text(dir, "config.json", config);
  qiao_model *m = NULL;
  CHECK_OK(open_dir(dir, &m));
  if (m != NULL) CHECK_OK(qiao_model_validate(m));
  remove_dir(dir);
  return m;
}

/* Every canonical tensor of `m` equals that of `ref` with each f32 value
 * cut to its upper 16 bits (bf16), or is identical when `bf16` is false. */
static void compare_variant(const qiao_model *m, const qiao_model *ref, bool bf16) {
  CHECK(qiao_model_tensor_count(m) == qiao_model_tensor_count(ref));
  for (uint64_t i = 0; i < qiao_model_tensor_count(ref); i++) {
    const qiao_tensor *r = qiao_model_tensor_at(ref, i);
    const qiao_tensor *t = qiao_model_tensor_find(m, r->name);
    if (t == NULL) {
      fprintf(stderr, "variant lacks %s\n", r->name);
      test_failures++;
      continue;
    }
    CHECK(((uintptr_t)t->data % (bf16 ? 2 : 4)) == 0); /* loadable in place */
    bool same = t->n_bytes == (bf16 ? r->n_bytes / 2 : r->n_bytes);
    for (uint64_t k = 0; same && k < r->n_bytes / 4; k++) {
      if (bf16)
        same =
            memcmp((const uint8_t *)t->data + 2 * k, (const uint8_t *)r->data + 4 * k + 2, 2) == 0;
      else
        same = memcmp((const uint8_t *)t->data + 4 * k, (const uint8_t *)r->data + 4 * k, 4) == 0;
    }
    if (!same) {
      fprintf(stderr, "variant tensor %s differs\n", r->name);
      test_failures++;
    }
  }
}

/* BF16 weights (q/k permuted as 2-byte rows), data at an offset that is not
 * a multiple of 4 (copied so it can be loaded), and Mistral's config. */
static void test_variants(void) {
  qiao_model *ref = NULL;
  CHECK_OK(open_dir(test_shared_path("models/stories260K/hf"), &ref));
  if (ref == NULL) return;

  st_entry entries[64];
  uint16_t *halves[64];
  for (uint64_t i = 0; i < stories_table.count; i++) {
    const qiao_st_tensor *t = &stories_table.tensors[i];
    halves[i] = malloc(t->n_bytes / 2);
    for (uint64_t k = 0; k < t->n_bytes / 4; k++)
      memcpy(&halves[i][k], t->data + 4 * k + 2, 2);
    entries[i] = (st_entry){t->name, "BF16", (int)t->n_dims, {0}, halves[i], t->n_bytes / 2};
    memcpy(entries[i].shape, t->shape, sizeof(t->shape));
  }
  size_t len;
  uint8_t *bf16 = st_write(entries, stories_table.count, &len);
  qiao_model *m = open_variant(bf16, len, stories_config);
  if (m) compare_variant(m, ref, true);
  qiao_model_close(m);
  free(bf16);
  for (uint64_t i = 0; i < stories_table.count; i++)
    free(halves[i]);

  /* The original header plus two spaces: every tensor starts 2 bytes off. */
  uint64_t header_len;
  memcpy(&header_len, stories_st, 8);
  char *header = malloc(header_len + 3);
  memcpy(header, stories_st + 8, header_len);
  memcpy(header + header_len, "  ", 3);
  uint8_t *shifted = st_assemble(header, header_len + 2, stories_st + 8 + header_len,
                                 stories_st_len - 8 - header_len, &len);
  m = open_variant(shifted, len, stories_config);
  if (m) compare_variant(m, ref, false);
  qiao_model_close(m);
  free(shifted);
  free(header);

  char mistral[16384];
  snprintf(mistral, sizeof(mistral), "%s",
           replace(stories_config, "LlamaForCausalLM", "MistralForCausalLM"));
  m = open_variant((const uint8_t *)stories_st, stories_st_len,
                   replace(mistral, "\"rope_theta\"", "\"sliding_window\": 256, \"rope_theta\""));
  if (m) {
    qiao_hparams hp;
    CHECK_OK(qiao_model_get_hparams(m, &hp));
    CHECK(strcmp(hp.architecture, "llama") == 0 && hp.sliding_window == 256 && hp.rope_neox == 0);
    compare_variant(m, ref, false);
  }
  qiao_model_close(m);
  qiao_model_close(ref);
}

int main(void) {
  char *config = test_read_file(test_shared_path("models/stories260K/hf/config.json"), NULL);
  snprintf(stories_config, sizeof(stories_config), "%s", config);
  free(config);
  stories_st =
      test_read_file(test_shared_path("models/stories260K/hf/model.safetensors"), &stories_st_len);
  CHECK_OK(qiao__st_parse((const uint8_t *)stories_st, stories_st_len, "stories", &stories_table));
  test_sharded();
  test_config_cases();
  test_missing_files();
  test_tensor_cases();
  test_tokenizer_files();
  test_variants();
  qiao__st_table_free(&stories_table);
  free(stories_st);
  TEST_END();
}
