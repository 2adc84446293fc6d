/*
 * echo.h - pieces shared by the rpmsg examples (rpmsg-echo, crash, detachable).
 */
#ifndef EXAMPLES_ECHO_H
#define EXAMPLES_ECHO_H

#include <stddef.h>
#include <stdint.h>
#include "rpmsg.h"
#include "rsc_table.h"
#include "trace.h"

/* vrings: 16 buffers per direction (the host posts 16 RX buffers of 512 bytes), align 16 */
#define ECHO_VRING_NUM   16u
#define ECHO_VRING_ALIGN 16u

/* The resource table of every rpmsg example: a vdev (first, so it is vdev 0) and a trace. */
struct echo_rsc_table {
    struct fw_resource_table hdr;
    uint32_t offset[2];
    struct rsc_rpmsg_vdev_entry vdev;
    struct rsc_trace_entry trace;
} __attribute__((packed));

#define ECHO_RSC_TABLE_INIT                                                           \
    {                                                                                 \
        .hdr = { 1, 2, { 0, 0 } },                                                    \
        .offset = { __builtin_offsetof(struct echo_rsc_table, vdev),                  \
                    __builtin_offsetof(struct echo_rsc_table, trace) },               \
        .vdev = RSC_RPMSG_VDEV_ENTRY(ECHO_VRING_NUM, ECHO_VRING_ALIGN),               \
        .trace = RSC_TRACE_ENTRY(vsoc_trace_buf, VSOC_TRACE_SIZE, "trace0"),          \
    }

/* Endpoint callback: echo the payload back to its sender on the same endpoint; payloads that
 * start with a command word known to `commands` (may be NULL) are handled instead of echoed. */
typedef int (*echo_command_fn)(struct rpmsg_endpoint *ept, const char *msg, size_t len,
                               uint32_t src);
void echo_cb(struct rpmsg_endpoint *ept, const void *data, size_t len, uint32_t src,
             void *priv);

/* Create the three echo channels: "rpmsg-raw", "rpmsg-tty", "rpmsg-openamp-demo-channel". */
void echo_create_channels(echo_command_fn commands);

/* "bench N": run the benchmark loop N times, reply "bench N result 0x... us T insns 4N".
 * Returns 1 if msg was a bench command. */
int echo_bench_command(struct rpmsg_endpoint *ept, const char *msg, size_t len, uint32_t src);

/* The benchmark kernel: x = (x + i) ^ 0x5a for i = n..1, exactly 4 instructions per iteration
 * on both CPUs (add, eor/xori, subs/addi, bne/bnez). Result is the same on both. */
uint32_t echo_bench_loop(uint32_t n);

/* Parse a decimal number; returns the number of characters used (0 if none). */
size_t echo_parse_u32(const char *s, size_t len, uint32_t *out);

#endif
