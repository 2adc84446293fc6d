/*
 * trap_rv32.c - RISC-V trap dispatch (called from vsoc_trap_entry in startup_rv32.S).
 */
#include <stdint.h>
#include "vsoc.h"

extern void vsoc_timer_irq(void);

#define MCAUSE_INTERRUPT  0x80000000u
#define MCAUSE_M_TIMER    7u
#define MCAUSE_M_EXTERNAL 11u

/* FATAL code for a synchronous exception: 0xDEAD1000 | mcause (2 = illegal instruction,
 * 5/7 = load/store access fault, ...). The emulator normally reports faults before they are
 * vectored; this is the fallback that keeps the report on real hardware. */
#define FATAL_TRAP(cause) (0xDEAD1000u | ((cause) & 0xFFFu))

uint32_t vsoc_trap(uint32_t mcause, uint32_t mepc, uint32_t mtval);

/* Returns the address to resume at (mepc, possibly moved past vsoc_sleep's wfi). */
uint32_t vsoc_trap(uint32_t mcause, uint32_t mepc, uint32_t mtval)
{
    (void)mtval;
    if (!(mcause & MCAUSE_INTERRUPT))
        vsoc_fatal(FATAL_TRAP(mcause));

    /* The cause names the highest-priority line, but both can be pending: IRQ_PENDING tells
     * which sources to serve, so one trap serves both and none is left for a second trap. */
    uint32_t pending = mmio_read(VSOC_SYSCTL_BASE, SYSCTL_IRQ_PENDING);
    uint32_t cause = mcause & ~MCAUSE_INTERRUPT;
    if (cause == MCAUSE_M_EXTERNAL)
        pending |= 1u << VSOC_IRQ_MAILBOX;
    if (cause == MCAUSE_M_TIMER)
        pending |= 1u << VSOC_IRQ_TIMER;

    if (pending & (1u << VSOC_IRQ_MAILBOX))
        vsoc_mailbox_irq();
    if (pending & (1u << VSOC_IRQ_TIMER))
        vsoc_timer_irq();
    return vsoc_irq_resume_pc(mepc);
}
