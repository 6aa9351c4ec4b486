/* The routes that do not generate: /health, /v1/models, /metrics,
 * /tokenize and /detokenize. */
#include <stdlib.h>
#include <string.h>

#include "json_in.h"
#include "reply.h"
#include "routes.h"

enum MHD_Result serve_route_health(serve_exchange *x) {
  serve_app *app = x->app;
  serve_phase phase = serve_app_phase(app);
  json_object *o = json_object_new_object(), *devices = json_object_new_array();
  unsigned status = 200;
  const char *state = "ok";
  if (phase == SERVE_LOADING) {
    status = 503;
    state = "loading";
  } else {
    qiao_scheduler_health h;
    qiao_scheduler_health_get(app->scheduler, &h);
    for (size_t i = 0; i < qiao_pool_size(app->pool); i++) {
      qiao_pool_replica_info info;
      qiao_pool_replica_info_get(app->pool, i, &info);
      json_object *d = json_object_new_object();
      json_object_object_add(d, "spec", json_object_new_string(info.spec));
      json_object_object_add(d, "device", json_object_new_string(info.device));
      json_object_object_add(d, "ok", json_object_new_boolean(info.ok));
      json_object_object_add(d, "failure", info.ok ? NULL : json_object_new_string(info.failure));
      json_object_array_add(devices, d);
    }
    json_object_object_add(o, "running", json_object_new_int64(h.running));
    json_object_object_add(o, "queued", json_object_new_int64(h.queued));
    if (phase == SERVE_DRAINING || h.draining) {
      status = 503;
      state = "draining";
    } else if (h.replicas_ok == 0) {
      status = 503;
      state = "no_device"; /* every replica is out: "devices" says why */
    }
  }
  json_object_object_add(o, "status", json_object_new_string(state));
  json_object_object_add(o, "devices", devices);
  return serve_reply_json(x, status, o);
}

enum MHD_Result serve_route_models(serve_exchange *x) {
  json_object *m = json_object_new_object();
  json_object_object_add(m, "id", json_object_new_string(x->app->model_name));
  json_object_object_add(m, "object", json_object_new_string("model"));
  json_object_object_add(m, "created", json_object_new_int64(x->app->started));
  json_object_object_add(m, "owned_by", json_object_new_string("qiao"));
  json_object *list = json_object_new_object(), *data = json_object_new_array();
  json_object_array_add(data, m);
  json_object_object_add(list, "object", json_object_new_string("list"));
  json_object_object_add(list, "data", data);
  return serve_reply_json(x, 200, list);
}

enum MHD_Result serve_route_metrics(serve_exchange *x) {
  char *text = NULL;
  size_t len = 0;
  qiao_status *st = qiao_scheduler_metrics(x->app->scheduler, &text, &len);
  if (st != NULL) {
    serve_error e;
    serve_fail(&e, 500, NULL, "metrics: %s", qiao_status_message(st));
    qiao_status_free(st);
    return serve_reply_error(x, &e);
  }
  enum MHD_Result r = serve_reply_text(x, 200, "text/plain; version=0.0.4", text, len);
  free(text);
  return r;
}

/* {"content": text, "add_special": bool, "parse_special": bool} ->
 * {"tokens": [...]}. add_special (BOS) is off by default, as in
 * llama-server; special-token text is matched unless parse_special is false. */
enum MHD_Result serve_route_tokenize(serve_exchange *x) {
  serve_error e;
  json_object *body = serve_json_parse_object(x->body.data, x->body.len, &e);
  if (body == NULL) return serve_reply_error(x, &e);
  const char *content = NULL;
  size_t len = 0;
  bool add_special = false, parse_special = true;
  bool ok = serve_json_string(body, "content", &content, &len, &e) &&
            serve_json_bool(body, "add_special", &add_special, &e) &&
            serve_json_bool(body, "parse_special", &parse_special, &e);
  if (ok && content == NULL) ok = serve_bad_request(&e, "content", "content is required");
  int32_t *ids = NULL;
  size_t n = 0;
  if (ok) {
    qiao_encode_options enc = {sizeof(enc), add_special, parse_special};
    qiao_status *st = qiao_tokenizer_encode(x->app->tokenizer, content, len, &enc, &ids, &n);
    if (st != NULL) {
      ok = serve_fail(&e, 500, NULL, "tokenize: %s", qiao_status_message(st));
      qiao_status_free(st);
    }
  }
  json_object_put(body);
  if (!ok) return serve_reply_error(x, &e);
  json_object *tokens = json_object_new_array_ext((int)n);
  for (size_t i = 0; i < n; i++)
    json_object_array_add(tokens, json_object_new_int(ids[i]));
  free(ids);
  json_object *out = json_object_new_object();
  json_object_object_add(out, "tokens", tokens);
  return serve_reply_json(x, 200, out);
}

/* {"tokens": [ids]} -> {"content": text}. */
enum MHD_Result serve_route_detokenize(serve_exchange *x) {
  serve_error e;
  json_object *body = serve_json_parse_object(x->body.data, x->body.len, &e);
  if (body == NULL) return serve_reply_error(x, &e);
  json_object *arr = serve_json_get(body, "tokens");
  uint32_t vocab = x->app->vocab_size;
  bool ok = true;
  size_t n = 0;
  int32_t *ids = NULL;
  if (arr == NULL || !json_object_is_type(arr, json_type_array)) {
    ok = serve_bad_request(&e, "tokens", "tokens must be an array of token ids");
  } else {
    n = json_object_array_length(arr);
    if ((ids = malloc(n ? n * sizeof(int32_t) : 1)) == NULL)
      ok = serve_fail(&e, 500, NULL, "out of memory");
  }
  for (size_t i = 0; ok && i < n; i++) {
    json_object *v = json_object_array_get_idx(arr, i);
    int64_t id = -1;
    if (v == NULL || !json_object_is_type(v, json_type_int) ||
        (id = json_object_get_int64(v)) < 0 || id >= (int64_t)vocab)
      ok = serve_bad_request(&e, "tokens", "tokens[%zu] must be a token id between 0 and %u", i,
                             vocab - 1);
    else
      ids[i] = (int32_t)id;
  }
  char *text = NULL;
  size_t len = 0;
  if (ok) {
    qiao_status *st = qiao_tokenizer_decode(x->app->tokenizer, ids, n, &text, &len);
    if (st != NULL) {
      ok = serve_fail(&e, 500, NULL, "detokenize: %s", qiao_status_message(st));
      qiao_status_free(st);
    }
  }
  free(ids);
  json_object_put(body);
  if (!ok) return serve_reply_error(x, &e);
  json_object *out = json_object_new_object();
  json_object_object_add(out, "content", json_object_new_string_len(text, (int)len));
  free(text);
  return serve_reply_json(x, 200, out);
}
