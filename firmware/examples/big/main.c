/*
 * big - an image with 8 MiB of loadable data, to measure loading time.
 *
 * Resource table: one trace entry. The data (big/pattern.S) lives in DDR: 0x80000000 for the
 * Cortex-M4 image, 0x81000000 for the RV32 image. At start the firmware checks every page header
 * and traces "big: 8388608 bytes at 0x..., checksum 0x..., bad pages N"; the checksum is
 * FNV-1a over 32-bit words (c = 2166136261; c = (c ^ word) * 16777619 for every word), which a
 * host can recompute from the ELF's .ddr section.
 */
#include "rsc_table.h"
#include "trace.h"
#include "vsoc.h"

extern const uint32_t big_pattern[], big_pattern_end[];

struct big_rsc_table {
    struct fw_resource_table hdr;
    uint32_t offset[1];
    struct rsc_trace_entry trace;
} __attribute__((packed));

RSC_TABLE_SECTION struct big_rsc_table resource_table = {
    .hdr = { 1, 1, { 0, 0 } },
    .offset = { __builtin_offsetof(struct big_rsc_table, trace) },
    .trace = RSC_TRACE_ENTRY(vsoc_trace_buf, VSOC_TRACE_SIZE, "trace0"),
};

int main(void)
{
    vsoc_publish_rsc_table(&resource_table, sizeof(resource_table));
    trace_printf("big on %s core %u", VSOC_ARCH_NAME, vsoc_core_id());

    const volatile uint32_t *w = big_pattern;
    uint32_t words = (uint32_t)(big_pattern_end - big_pattern);
    uint32_t checksum = 2166136261u, bad = 0;
    uint64_t t0 = vsoc_now_us();
    for (uint32_t i = 0; i < words; i++) {
        uint32_t v = w[i];
        if ((i & 1023u) == 0 && v != (uint32_t)(uintptr_t)&w[i])
            bad++;
        checksum = (checksum ^ v) * 16777619u;
    }
    uint32_t us = (uint32_t)(vsoc_now_us() - t0);
    trace_printf("big: %u bytes at 0x%08x, checksum 0x%08x, bad pages %u (%u us)", words * 4u,
                 (uint32_t)(uintptr_t)big_pattern, checksum, bad, us);

    for (;;) {
        vsoc_sleep_prepare();
        vsoc_sleep();
    }
}
