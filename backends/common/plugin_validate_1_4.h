/* plugin_validate_1_4.h: the host-side argument checks of the ops of device
 * ABI 1.4 (docs/spec/device-abi.md §14): latent_write, attention_latent and
 * moe_route, in the order of §6 (queue, args, capability, shape rules, byte
 * sizes, operands, overlaps), with the rules and messages of every backend.
 * Defined in plugin_validate.c beside the checks of 1.0 to 1.3; a header of
 * its own so that a plugin opts in when it implements these ops. Values in
 * device buffers (slots, block tables, token_seq, token_pos) are the
 * kernels' to check, as for kv_write and attention. */
#ifndef QIAO_PLUGIN_VALIDATE_1_4_H
#define QIAO_PLUGIN_VALIDATE_1_4_H

#include "plugin_validate.h"

/* plan->empty when n_tokens is 0; plan->cache_elem: 4 (F32) or 2 (F16). */
qiao_dev_error *plugin__validate_latent_write(const plugin_rules *rules,
                                              const qiao_dev_queue *queue,
                                              const qiao_dev_latent_write_args *args,
                                              plugin_plan *plan);
/* plan->empty when n_tokens or n_heads is 0; plan->cache_elem as above. */
qiao_dev_error *plugin__validate_attention_latent(const plugin_rules *rules,
                                                  const qiao_dev_queue *queue,
                                                  const qiao_dev_attention_latent_args *args,
                                                  plugin_plan *plan);
/* plan->empty when n_tokens is 0; plan->has_bias when bias is given. */
qiao_dev_error *plugin__validate_moe_route(const plugin_rules *rules, const qiao_dev_queue *queue,
                                           const qiao_dev_moe_route_args *args, plugin_plan *plan);

#endif
