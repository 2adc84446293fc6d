/*
 * hello - the smallest useful firmware: a trace buffer and a timer.
 *
 * Resource table: one RSC_TRACE entry, nothing else (no vdev, so the host starts no virtio).
 * Behaviour: traces "hello from <arch> core <id>", then one "tick N" line every 100 ms for
 * HELLO_TICKS ticks (enough to see the timer work without flooding the trace), then idles.
 */
#include "rsc_table.h"
#include "trace.h"
#include "vsoc.h"

#define HELLO_TICK_US 100000u
#define HELLO_TICKS   50u

struct hello_rsc_table {
    struct fw_resource_table hdr;
    uint32_t offset[1];
    struct rsc_trace_entry trace;
} __attribute__((packed));

RSC_TABLE_SECTION struct hello_rsc_table resource_table = {
    .hdr = { 1, 1, { 0, 0 } },
    .offset = { __builtin_offsetof(struct hello_rsc_table, trace) },
    .trace = RSC_TRACE_ENTRY(vsoc_trace_buf, VSOC_TRACE_SIZE, "trace0"),
};

static volatile uint32_t ticks;

void vsoc_timer_tick(void)
{
    uint32_t n = ++ticks;
    trace_printf("tick %u", n);
    if (n >= HELLO_TICKS) {
        vsoc_timer_stop();
        trace_printf("done after %u ticks, idle", n);
    }
}

int main(void)
{
    vsoc_publish_rsc_table(&resource_table, sizeof(resource_table));
    trace_printf("hello from %s core %u", VSOC_ARCH_NAME, vsoc_core_id());
    vsoc_timer_start(HELLO_TICK_US);
    vsoc_irq_enable();
    for (;;) {
        /* nothing to do outside the tick handler: just sleep between interrupts */
        vsoc_sleep_prepare();
        vsoc_sleep();
    }
}
