/* cuda_route: the CUDA kernel's moe_route algorithm, without a GPU.
 *
 * backends/cuda/cuda_route.h is the per-token code the moe_route kernel runs
 * with a warp of 32 lanes; built for the host it runs with one lane, so the
 * same selection logic (the strict ranking, "the best ranked after the last
 * pick", the kept groups as those ranked at or before the last group picked,
 * a group's two best, the zeros of dropped groups, normalization and scale)
 * is compared here with the CPU backend's moe_route on DeepSeek-V2/V3
 * routings, exact ties and a bias that makes the dropped groups win. With
 * one lane the sums run in the CPU backend's order, so ids and weights must
 * be identical. Not covered: the warp's shuffles (on the device the softmax
 * sum is added in another order: the weights may differ by rounding). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cuda_host_test.h"
#include "cuda_route.h"
#include "qiao/device.h"

static qiao_dev_backend *cpu_backend;
static qiao_dev_device *cpu_device;
static qiao_dev_queue *cpu_queue;

typedef struct route_case {
  const char *name;
  uint64_t n_tokens, n_experts, k;
  uint32_t scoring, normalize, n_groups, topk_groups, group_score;
  float scale;
  int bias;     /* 0: none, 1: random, 2: so negative that every kept c is below 0 */
  int ties;     /* plant exact ties: equal logits, and whole groups copied */
  float spread; /* logits in [-spread, spread] */
} route_case;

/* The CPU backend's moe_route of the case's inputs (bias used when use_bias). */
static int cpu_route(const qiao_dev_moe_route_args *a, const float *logits, const float *bias,
                     int use_bias, int32_t *ids, float *weights) {
  const uint64_t lb = a->n_tokens * a->n_experts * 4, ob = a->n_tokens * a->k * 4;
  qiao_dev_buffer *l = NULL, *b = NULL, *o = NULL;
  int done = 0;
  if (ok(api->buffer_create(cpu_device, lb, &l), "buffer_create") &&
      ok(api->buffer_create(cpu_device, a->n_experts * 4, &b), "buffer_create") &&
      ok(api->buffer_create(cpu_device, 2 * ob, &o), "buffer_create") &&
      ok(api->upload(cpu_queue, (qiao_dev_ref){l, 0}, logits, lb), "upload") &&
      ok(api->upload(cpu_queue, (qiao_dev_ref){b, 0}, bias, a->n_experts * 4), "upload")) {
    qiao_dev_moe_route_args r = *a;
    r.logits = (qiao_dev_ref){l, 0};
    r.bias = use_bias ? (qiao_dev_ref){b, 0} : (qiao_dev_ref){NULL, 0};
    r.ids = (qiao_dev_ref){o, 0};
    r.weights = (qiao_dev_ref){o, ob};
    done = ok(api->moe_route(cpu_queue, &r), "moe_route") &&
           ok(api->download(cpu_queue, ids, (qiao_dev_ref){o, 0}, ob), "download") &&
           ok(api->download(cpu_queue, weights, (qiao_dev_ref){o, ob}, ob), "download") &&
           ok(api->queue_synchronize(cpu_queue), "queue_synchronize");
  }
  api->buffer_destroy(l), api->buffer_destroy(b), api->buffer_destroy(o);
  return done;
}

static void run_case(const route_case *rc) {
  const uint64_t nt = rc->n_tokens, ne = rc->n_experts, k = rc->k;
  const uint64_t groups = rc->n_groups > 1 ? rc->n_groups : 0;
  float *logits = malloc(nt * ne * 4), *bias = malloc(ne * 4);
  for (uint64_t i = 0; i < nt * ne; i++)
    logits[i] = rnd_unit() * rc->spread;
  for (uint64_t e = 0; e < ne; e++)
    bias[e] = rc->bias == 2 ? -2.0f - rnd_unit() : rnd_unit() * 0.1f;
  if (rc->ties)
    for (uint64_t t = 0; t < nt; t++) {
      float *l = logits + t * ne;
      for (uint64_t e = 1; e < ne; e += 3)
        l[e] = l[e - 1]; /* equal logits side by side */
      if (groups >= 2) {
        const uint64_t per = ne / groups;
        memcpy(l + per, l, per * 4); /* group 1 equals group 0 */
        if (rc->bias) memcpy(bias + per, bias, per * 4);
      }
    }
  int32_t *want_ids = malloc(nt * k * 4), *got_ids = malloc(nt * k * 4);
  float *want_w = malloc(nt * k * 4), *got_w = malloc(nt * k * 4);
  float *scratch = malloc(nt * (ne + groups) * 4);
  qiao_dev_moe_route_args a = {.struct_size = sizeof(a),
                               .n_tokens = nt,
                               .n_experts = ne,
                               .k = k,
                               .scoring = rc->scoring,
                               .normalize = rc->normalize,
                               .n_groups = rc->n_groups,
                               .topk_groups = rc->topk_groups,
                               .group_score = rc->group_score,
                               .scale = rc->scale};
  const float *b = rc->bias ? bias : NULL;
  if (cpu_route(&a, logits, bias, rc->bias != 0, want_ids, want_w)) {
    cuq_route_args h = {logits,
                        b,
                        got_ids,
                        got_w,
                        scratch,
                        nt,
                        ne,
                        k,
                        groups,
                        rc->topk_groups,
                        rc->scoring == QIAO_DEV_MOE_SCORE_SIGMOID,
                        rc->normalize,
                        rc->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM,
                        rc->scale};
    for (uint64_t t = 0; t < nt; t++)
      cuq_route_token(&h, t, 0);
    int bad = 0;
    for (uint64_t i = 0; i < nt * k; i++)
      if ((got_ids[i] != want_ids[i] || memcmp(&got_w[i], &want_w[i], 4) != 0) && bad++ < 3)
        fprintf(stderr, "%s: token %llu pick %llu: id %d weight %a, CPU backend %d %a\n", rc->name,
                (unsigned long long)(i / k), (unsigned long long)(i % k), got_ids[i], got_w[i],
                want_ids[i], want_w[i]);
    if (bad) failures++;
    printf("%-34s %llu tokens, %llu experts, k %llu: %s\n", rc->name, (unsigned long long)nt,
           (unsigned long long)ne, (unsigned long long)k, bad ? "DIFFERENT" : "identical");
  }
  free(logits), free(bias), free(want_ids), free(got_ids), free(want_w), free(got_w);
  free(scratch);
}

int main(void) {
  rng_state = 0x243f6a8885a308d3ull;
  api = qiao_cpu_get_api();
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  if (!ok(api->backend_open(&bo, &cpu_backend), "backend_open") ||
      !ok(api->device_open(cpu_backend, 0, NULL, &cpu_device), "device_open") ||
      !ok(api->queue_create(cpu_device, &cpu_queue), "queue_create"))
    return 1;
  const uint32_t SOFTMAX = QIAO_DEV_MOE_SCORE_SOFTMAX, SIGMOID = QIAO_DEV_MOE_SCORE_SIGMOID;
  const uint32_t MAX = QIAO_DEV_MOE_GROUP_MAX, TOP2 = QIAO_DEV_MOE_GROUP_TOP2_SUM;
  const route_case cases[] = {
      /* name, tokens, experts, k, scoring, normalize, groups, topk_groups, group_score, scale,
       * bias, ties, spread */
      {"one expert", 3, 1, 1, SOFTMAX, 1, 0, 0, 0, 1.0f, 0, 0, 1.0f},
      {"DeepSeek-V2-Lite (greedy)", 9, 64, 6, SOFTMAX, 0, 0, 0, 0, 1.0f, 0, 0, 4.0f},
      {"DeepSeek-V2 (group max)", 9, 160, 6, SOFTMAX, 0, 8, 3, MAX, 16.0f, 0, 0, 4.0f},
      {"DeepSeek-V3 (top-2 sum, bias)", 9, 256, 8, SIGMOID, 1, 8, 4, TOP2, 2.5f, 1, 0, 4.0f},
      {"V3, every kept c negative", 5, 256, 8, SIGMOID, 1, 8, 4, TOP2, 2.5f, 2, 0, 4.0f},
      {"V3 with exact ties", 9, 256, 8, SIGMOID, 1, 8, 4, TOP2, 2.5f, 1, 1, 4.0f},
      {"V2 with exact ties", 9, 160, 6, SOFTMAX, 1, 8, 3, MAX, 1.0f, 0, 1, 4.0f},
      {"sigmoid without groups, bias", 7, 48, 48, SIGMOID, 0, 1, 77, 9, 1.0f, 1, 1, 2.0f},
      {"groups of 2, all kept", 4, 16, 16, SOFTMAX, 1, 8, 8, TOP2, 0.5f, 1, 1, 8.0f},
      {"one group kept", 6, 40, 5, SIGMOID, 0, 8, 1, MAX, 1.0f, 1, 0, 3.0f},
      {"wide logits (softmax underflow)", 6, 96, 7, SOFTMAX, 1, 4, 2, TOP2, 1.0f, 0, 1, 90.0f},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    run_case(&cases[i]);
  api->queue_destroy(cpu_queue);
  api->device_close(cpu_device);
  api->backend_close(cpu_backend);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
