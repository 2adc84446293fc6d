/*
 * crash - rpmsg-echo plus commands that make the core fail in each way the host must report.
 *
 * Resource table and channels: as rpmsg-echo (vdev + trace; rpmsg-raw, rpmsg-tty,
 * rpmsg-openamp-demo-channel). Commands, sent as the whole payload on any channel:
 *   "crash mmu"        read the unmapped address 0x60000000        -> mmufault
 *   "crash mmu-write"  write it                                    -> mmufault
 *   "crash wdog"       start the watchdog (100 ms) and never kick  -> watchdog
 *   "crash abort"      write 0xC0DEDEAD to the FATAL register      -> fatal error
 *   "crash udf"        execute an undefined instruction            -> fatal error
 *   "wdog start [MS]"  start the watchdog (default 500 ms), kicked from a 1/4-period timer
 *   "wdog stop"        stop it
 * Each command replies with an acknowledgement first ("crashing: mmu", "wdog started 500 ms"),
 * then acts; the crash itself happens after the reply has been handed to the host (kicked).
 */
#include "echo.h"
#include "fwlib.h"
#include "vsoc.h"

#define CRASH_WDOG_MS     100u
#define CRASH_ABORT_CODE  0xC0DEDEADu
#define WDOG_DEFAULT_MS   500u

RSC_TABLE_SECTION struct echo_rsc_table resource_table = ECHO_RSC_TABLE_INIT;

static volatile int wdog_healthy;   /* the timer tick kicks the watchdog while set */
static volatile uint32_t crash_pending;   /* which crash to perform from the main loop */

enum { CRASH_NONE, CRASH_MMU, CRASH_MMU_WRITE, CRASH_WDOG, CRASH_ABORT, CRASH_UDF };

void vsoc_timer_tick(void)
{
    if (wdog_healthy)
        vsoc_wdog_kick();
}

static int is(const char *msg, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len == n && !memcmp(msg, word, n);
}

static int starts(const char *msg, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && !memcmp(msg, word, n);
}

static void reply(struct rpmsg_endpoint *ept, uint32_t dst, const char *text)
{
    rpmsg_send(ept, dst, text, strlen(text));
}

static int crash_commands(struct rpmsg_endpoint *ept, const char *msg, size_t len, uint32_t src)
{
    static const struct { const char *cmd; uint32_t what; } crashes[] = {
        { "crash mmu", CRASH_MMU },     { "crash mmu-write", CRASH_MMU_WRITE },
        { "crash wdog", CRASH_WDOG },   { "crash abort", CRASH_ABORT },
        { "crash udf", CRASH_UDF },
    };
    for (unsigned i = 0; i < sizeof(crashes) / sizeof(crashes[0]); i++) {
        if (is(msg, len, crashes[i].cmd)) {
            char text[40];
            snprintf_(text, sizeof(text), "crashing: %s", crashes[i].cmd + 6);
            reply(ept, src, text);
            /* Not now: the reply is only kicked at the end of rpmsg_poll(). */
            crash_pending = crashes[i].what;
            return 1;
        }
    }
    if (starts(msg, len, "wdog start")) {
        uint32_t ms = WDOG_DEFAULT_MS;
        if (len > 10)
            echo_parse_u32(msg + 10, len - 10, &ms);
        if (ms < 4)
            ms = 4;
        wdog_healthy = 1;
        vsoc_timer_start(ms * 1000u / 4u);   /* kick four times per period */
        vsoc_wdog_start(ms);
        char text[40];
        snprintf_(text, sizeof(text), "wdog started %u ms", ms);
        reply(ept, src, text);
        trace_printf("%s", text);
        return 1;
    }
    if (is(msg, len, "wdog stop")) {
        vsoc_wdog_stop();
        vsoc_timer_stop();
        wdog_healthy = 0;
        reply(ept, src, "wdog stopped");
        trace_printf("wdog stopped");
        return 1;
    }
    return 0;
}

/* noinline + distinct names: the host's crash report names the function from the symbols. */
__attribute__((noinline)) static void crash_mmu_read(void)
{
    volatile uint32_t *bad = (volatile uint32_t *)(uintptr_t)VSOC_UNMAPPED_ADDR;
    trace_printf("crash: reading 0x%08x", VSOC_UNMAPPED_ADDR);
    (void)*bad;
}

__attribute__((noinline)) static void crash_mmu_write(void)
{
    volatile uint32_t *bad = (volatile uint32_t *)(uintptr_t)VSOC_UNMAPPED_ADDR;
    trace_printf("crash: writing 0x%08x", VSOC_UNMAPPED_ADDR);
    *bad = 0xBADBAD;
}

__attribute__((noinline)) static void crash_watchdog(void)
{
    trace_printf("crash: watchdog started (%u ms), no longer kicked", CRASH_WDOG_MS);
    wdog_healthy = 0;
    vsoc_timer_stop();
    vsoc_wdog_start(CRASH_WDOG_MS);
    /* keep running (and sleeping): only the missing kicks should cause the crash */
}

__attribute__((noinline)) static void crash_abort(void)
{
    trace_printf("crash: abort (FATAL 0x%08x)", CRASH_ABORT_CODE);
    vsoc_fatal(CRASH_ABORT_CODE);
}

__attribute__((noinline)) static void crash_undefined(void)
{
    trace_printf("crash: undefined instruction");
#if defined(__arm__)
    __asm__ volatile("udf #0");
#else
    __asm__ volatile(".4byte 0x00000000");   /* all-zero is defined as illegal in RISC-V */
#endif
}

static void do_crash(uint32_t what)
{
    switch (what) {
    case CRASH_MMU: crash_mmu_read(); break;
    case CRASH_MMU_WRITE: crash_mmu_write(); break;
    case CRASH_WDOG: crash_watchdog(); break;
    case CRASH_ABORT: crash_abort(); break;
    case CRASH_UDF: crash_undefined(); break;
    default: break;
    }
}

int main(void)
{
    vsoc_publish_rsc_table(&resource_table, sizeof(resource_table));
    trace_printf("crash on %s core %u", VSOC_ARCH_NAME, vsoc_core_id());
    rpmsg_init(&resource_table.vdev.vdev);
    echo_create_channels(crash_commands);
    vsoc_irq_enable();
    for (;;) {
        vsoc_sleep_prepare();
        if (!rpmsg_work_pending())
            vsoc_sleep();
        rpmsg_poll();   /* replies are kicked to the host before we crash below */
        uint32_t what = crash_pending;
        crash_pending = CRASH_NONE;
        do_crash(what);
    }
}
