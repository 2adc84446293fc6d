/*
 * board.c - timer, watchdog, system control and interrupt-line helpers for the virtual SoC.
 * Everything CPU-specific lives in startup_m4.c / startup_rv32.S + the small #if blocks here.
 */
#include "vsoc.h"

/* Weak defaults: an application that does not use a source gets a harmless handler. The mailbox
 * default drains everything so a level-triggered line cannot keep the core in its handler. */
__attribute__((weak)) void vsoc_timer_tick(void) {}

__attribute__((weak)) void vsoc_mailbox_irq(void)
{
    while (mmio_read(VSOC_MAILBOX_BASE, MBOX_RX_DATA) != MBOX_EMPTY)
        ;
    (void)mmio_read(VSOC_MAILBOX_BASE, MBOX_CTRL_RX);
}

/* Called by the CPU-specific interrupt entry for line 1: acknowledge first (write 1 to clear),
 * so a period that expires while the tick runs raises the line again instead of being lost. */
void vsoc_timer_irq(void)
{
    mmio_write(VSOC_TIMER_BASE, TIMER_STATUS, TIMER_STATUS_EXPIRED);
    vsoc_timer_tick();
}

void vsoc_irq_line_enable(unsigned line)
{
#if defined(__arm__)
    mmio_write(SCS_NVIC_ISER0, 0, 1u << line);
#else
    /* line 0 = machine external (MEIE, bit 11), line 1 = machine timer (MTIE, bit 7) */
    uint32_t bit = line == VSOC_IRQ_MAILBOX ? (1u << 11) : (1u << 7);
    __asm__ volatile("csrs mie, %0" ::"r"(bit) : "memory");
#endif
}

void vsoc_irq_line_disable(unsigned line)
{
#if defined(__arm__)
    mmio_write(SCS_NVIC_ICER0, 0, 1u << line);
#else
    uint32_t bit = line == VSOC_IRQ_MAILBOX ? (1u << 11) : (1u << 7);
    __asm__ volatile("csrc mie, %0" ::"r"(bit) : "memory");
#endif
}

volatile uint32_t vsoc_wake;

/* {check, wfi, after the wfi}: addresses inside vsoc_sleep() (startup_m4.c / startup_rv32.S). */
extern const uint32_t vsoc_sleep_window[3];

uint32_t vsoc_irq_resume_pc(uint32_t pc)
{
    vsoc_wake = 1;
    if (pc >= (vsoc_sleep_window[0] & ~1u) && pc <= (vsoc_sleep_window[1] & ~1u))
        return vsoc_sleep_window[2] & ~1u;
    return pc;
}

uint64_t vsoc_now_us(void)
{
    /* Read high, low, high again: a carry between the two halves is detected and retried. */
    uint32_t hi, lo, hi2;
    do {
        hi = mmio_read(VSOC_TIMER_BASE, TIMER_NOW_HI);
        lo = mmio_read(VSOC_TIMER_BASE, TIMER_NOW_LO);
        hi2 = mmio_read(VSOC_TIMER_BASE, TIMER_NOW_HI);
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

void vsoc_delay_us(uint32_t us)
{
    uint32_t start = mmio_read(VSOC_TIMER_BASE, TIMER_NOW_LO);
    while (mmio_read(VSOC_TIMER_BASE, TIMER_NOW_LO) - start < us)
        ;
}

void vsoc_timer_start(uint32_t period_us)
{
    mmio_write(VSOC_TIMER_BASE, TIMER_STATUS, TIMER_STATUS_EXPIRED);
    mmio_write(VSOC_TIMER_BASE, TIMER_PERIOD_US, period_us);
    vsoc_irq_line_enable(VSOC_IRQ_TIMER);
}

void vsoc_timer_stop(void)
{
    mmio_write(VSOC_TIMER_BASE, TIMER_PERIOD_US, 0);
    mmio_write(VSOC_TIMER_BASE, TIMER_STATUS, TIMER_STATUS_EXPIRED);
}

uint32_t vsoc_core_id(void)
{
    return mmio_read(VSOC_SYSCTL_BASE, SYSCTL_CORE_ID);
}

void vsoc_fatal(uint32_t code)
{
    mmio_write(VSOC_SYSCTL_BASE, SYSCTL_FATAL, code);
    /* The emulator stops the core on the write; real hardware would reset it. Either way
     * nothing after this point should run. */
    vsoc_irq_disable();
    for (;;)
        vsoc_wfi();
}

void vsoc_publish_rsc_table(const void *table, uint32_t size)
{
    /* The STM32MP TAMP-register trick: the host (or a debugger) finds the live table here when
     * it attaches to a core it did not load. Size first, address last: a non-zero address means
     * both are valid. */
    mmio_write(VSOC_SYSCTL_BASE, SYSCTL_RSC_TABLE_SIZE, size);
    mmio_write(VSOC_SYSCTL_BASE, SYSCTL_RSC_TABLE_DA, (uint32_t)(uintptr_t)table);
}

void vsoc_wdog_start(uint32_t timeout_ms)
{
    mmio_write(VSOC_WDOG_BASE, WDOG_KICK, 1);
    mmio_write(VSOC_WDOG_BASE, WDOG_TIMEOUT_MS, timeout_ms);
}

void vsoc_wdog_kick(void)
{
    mmio_write(VSOC_WDOG_BASE, WDOG_KICK, 1);
}

void vsoc_wdog_stop(void)
{
    mmio_write(VSOC_WDOG_BASE, WDOG_TIMEOUT_MS, 0);
}
