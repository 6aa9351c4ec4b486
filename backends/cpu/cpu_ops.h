/* cpu_ops.h: the ops of the CPU backend (one file per family: cpu_matmul.c,
 * cpu_attention.c, cpu_elementwise.c). Each validates every argument, then
 * runs at once on the device's threads. */
#ifndef QIAO_CPU_OPS_H
#define QIAO_CPU_OPS_H

#include "cpu_internal.h"

/* The mask (1u << dtype) of dtypes the CPU backend implements `op` for. */
uint32_t qiao__cpu_op_dtypes(qiao_dev_op op);

qiao_dev_error *qiao__cpu_embed(qiao_dev_queue *queue, const qiao_dev_embed_args *args);
qiao_dev_error *qiao__cpu_matmul(qiao_dev_queue *queue, const qiao_dev_matmul_args *args);
qiao_dev_error *qiao__cpu_matmul_experts(qiao_dev_queue *queue,
                                         const qiao_dev_matmul_experts_args *args);
qiao_dev_error *qiao__cpu_rmsnorm(qiao_dev_queue *queue, const qiao_dev_rmsnorm_args *args);
qiao_dev_error *qiao__cpu_rope(qiao_dev_queue *queue, const qiao_dev_rope_args *args);
qiao_dev_error *qiao__cpu_kv_write(qiao_dev_queue *queue, const qiao_dev_kv_write_args *args);
qiao_dev_error *qiao__cpu_attention(qiao_dev_queue *queue, const qiao_dev_attention_args *args);
qiao_dev_error *qiao__cpu_swiglu(qiao_dev_queue *queue, const qiao_dev_swiglu_args *args);
qiao_dev_error *qiao__cpu_add(qiao_dev_queue *queue, const qiao_dev_add_args *args);
qiao_dev_error *qiao__cpu_argmax(qiao_dev_queue *queue, const qiao_dev_argmax_args *args);
qiao_dev_error *qiao__cpu_moe_gate(qiao_dev_queue *queue, const qiao_dev_moe_gate_args *args);
qiao_dev_error *qiao__cpu_moe_combine(qiao_dev_queue *queue, const qiao_dev_moe_combine_args *args);
/* (1.4) cpu_latent_attention.c and cpu_moe_route.c. */
qiao_dev_error *qiao__cpu_latent_write(qiao_dev_queue *queue,
                                       const qiao_dev_latent_write_args *args);
qiao_dev_error *qiao__cpu_attention_latent(qiao_dev_queue *queue,
                                           const qiao_dev_attention_latent_args *args);
qiao_dev_error *qiao__cpu_moe_route(qiao_dev_queue *queue, const qiao_dev_moe_route_args *args);

#endif
