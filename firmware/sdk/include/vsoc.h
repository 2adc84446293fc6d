/*
 * vsoc.h - board header for the virtual SoC (docs/virtual-soc.md is the contract).
 *
 * Every address and register offset below comes from the tables in docs/virtual-soc.md; the
 * emulator in src/remoteproc/platforms/emulator/ implements the same map. Change both together.
 *
 * The header also hides the few things that differ between the two CPU families the SoC offers
 * (Cortex-M4 and RV32IMAC): interrupt masking, wait-for-interrupt and memory barriers.
 */
#ifndef VSOC_H
#define VSOC_H

#include <stdint.h>
#include <stddef.h>

/* ---- memory map (each core's own view) ---------------------------------------------------- */
#define VSOC_TCM_BASE        0x00000000u   /* 512 KiB: code, vectors, rodata, resource table */
#define VSOC_TCM_SIZE        0x00080000u
#define VSOC_SRAM_BASE       0x20000000u   /* 256 KiB: data, bss, stack, trace buffer */
#define VSOC_SRAM_SIZE       0x00040000u
#define VSOC_DDR_BASE        0x80000000u   /* 256 MiB shared with the host, pa == da */
#define VSOC_DDR_SIZE        0x10000000u

#define VSOC_MAILBOX_BASE    0x40000000u
#define VSOC_CONSOLE_BASE    0x40001000u
#define VSOC_TIMER_BASE      0x40002000u
#define VSOC_WDOG_BASE       0x40003000u
#define VSOC_SYSCTL_BASE     0x40004000u

/* An address nothing is mapped at (between SRAM and the MMIO block is fine too). */
#define VSOC_UNMAPPED_ADDR   0x60000000u

/* ---- mailbox ------------------------------------------------------------------------------ */
#define MBOX_RX_DATA         0x00u  /* R: pop the next notify id; 0xFFFFFFFF when empty */
#define MBOX_RX_COUNT        0x04u  /* R: number of queued notify ids */
#define MBOX_TX_DATA         0x08u  /* W: kick the host with a notify id */
#define MBOX_IRQ_ENABLE      0x0Cu  /* RW: bit0 data, bit1 control word */
#define MBOX_CTRL_RX         0x10u  /* R: pending control word (0 = none); read clears */
#define MBOX_IRQ_STATUS      0x14u  /* R: bit0 data pending, bit1 control pending */
#define MBOX_CTRL_TX         0x18u  /* W: control word to the host */

#define MBOX_IRQ_DATA        (1u << 0)
#define MBOX_IRQ_CTRL        (1u << 1)
#define MBOX_EMPTY           0xFFFFFFFFu

/* control words, host -> remote */
#define MBOX_CTRL_DETACH     1u
#define MBOX_CTRL_SHUTDOWN   2u
/* control words, remote -> host */
#define MBOX_CTRL_DETACH_ACK 1u

/* ---- console ------------------------------------------------------------------------------ */
#define CONSOLE_TX           0x00u

/* ---- timer -------------------------------------------------------------------------------- */
#define TIMER_NOW_LO         0x00u
#define TIMER_NOW_HI         0x04u
#define TIMER_PERIOD_US      0x08u
#define TIMER_STATUS         0x0Cu  /* bit0 expired, write 1 to clear */
#define TIMER_STATUS_EXPIRED (1u << 0)

/* ---- watchdog ----------------------------------------------------------------------------- */
#define WDOG_TIMEOUT_MS      0x00u
#define WDOG_KICK            0x04u

/* ---- system control ----------------------------------------------------------------------- */
#define SYSCTL_FATAL         0x00u
#define SYSCTL_CORE_ID       0x04u
#define SYSCTL_RSC_TABLE_DA  0x08u
#define SYSCTL_RSC_TABLE_SIZE 0x0Cu
#define SYSCTL_IRQ_PENDING   0x10u  /* bit0 mailbox line, bit1 timer line */

/* ---- interrupt lines ---------------------------------------------------------------------- */
#define VSOC_IRQ_MAILBOX     0u
#define VSOC_IRQ_TIMER       1u

/* ---- Cortex-M System Control Space subset --------------------------------------------------- */
#define SCS_NVIC_ISER0       0xE000E100u
#define SCS_NVIC_ICER0       0xE000E180u
#define SCS_NVIC_ISPR0       0xE000E200u
#define SCS_NVIC_ICPR0       0xE000E280u
#define SCS_VTOR             0xE000ED08u

/* ---- MMIO accessors ----------------------------------------------------------------------- */
static inline uint32_t mmio_read(uint32_t base, uint32_t off)
{
    return *(volatile uint32_t *)(uintptr_t)(base + off);
}

static inline void mmio_write(uint32_t base, uint32_t off, uint32_t value)
{
    *(volatile uint32_t *)(uintptr_t)(base + off) = value;
}

/* ---- CPU-specific primitives -------------------------------------------------------------- */
#if defined(__arm__)
#define VSOC_ARCH_NAME "cortex-m4"
/* dmb orders our vring/table accesses against the host's on a real SoC; the emulator has no
 * caches or reordering, but firmware written for it should be correct on hardware too. */
static inline void vsoc_mb(void)       { __asm__ volatile("dmb" ::: "memory"); }
static inline void vsoc_irq_disable(void) { __asm__ volatile("cpsid i" ::: "memory"); }
static inline void vsoc_irq_enable(void)  { __asm__ volatile("cpsie i" ::: "memory"); }
static inline void vsoc_wfi(void)      { __asm__ volatile("wfi" ::: "memory"); }
#elif defined(__riscv)
#define VSOC_ARCH_NAME "riscv32"
static inline void vsoc_mb(void)       { __asm__ volatile("fence rw, rw" ::: "memory"); }
static inline void vsoc_irq_disable(void) { __asm__ volatile("csrci mstatus, 8" ::: "memory"); }
static inline void vsoc_irq_enable(void)  { __asm__ volatile("csrsi mstatus, 8" ::: "memory"); }
static inline void vsoc_wfi(void)      { __asm__ volatile("wfi" ::: "memory"); }
#else
#error "vsoc.h: unsupported CPU (Cortex-M4 or RV32 only)"
#endif

/* ---- board services (sdk/src/board.c) ----------------------------------------------------- */

/* Interrupt handlers the application may provide; the SDK has weak empty defaults.
 * They run in interrupt context after the SDK acknowledged the source where it must
 * (the timer's STATUS; the mailbox is drained by the rpmsg layer or by the application). */
void vsoc_timer_tick(void);          /* one timer period expired */
void vsoc_mailbox_irq(void);         /* mailbox line asserted; must drain RX_DATA / CTRL_RX */

/* Enable one interrupt line in the interrupt controller (NVIC or mie). */
void vsoc_irq_line_enable(unsigned line);
void vsoc_irq_line_disable(unsigned line);

/* Sleeping without losing wake-ups. The pattern is
 *
 *     vsoc_sleep_prepare();          // forget interrupts that were already handled
 *     if (!work_pending())           // look at the flags the handlers set
 *         vsoc_sleep();              // wfi, unless an interrupt was handled since prepare
 *
 * An interrupt handled after vsoc_sleep_prepare() makes vsoc_sleep() return at once; one that
 * arrives inside vsoc_sleep() between its check and its wfi (or is delivered with the wfi as
 * its return address) is resumed after the wfi by the SDK's interrupt exit. So interrupts stay
 * enabled the whole time: the SDK never executes wfi with interrupts masked, and it does not
 * depend on an interrupt being taken right after cpsie / csrsi (an emulator may only look at
 * its interrupt lines every so often). */
extern volatile uint32_t vsoc_wake;
static inline void vsoc_sleep_prepare(void)
{
    vsoc_wake = 0;
    vsoc_mb();
}
void vsoc_sleep(void);

/* Used by the CPU-specific interrupt exit: marks a wake-up and returns the address to resume
 * at (`pc`, or the end of vsoc_sleep() if the interrupt hit its check-then-wfi window). */
uint32_t vsoc_irq_resume_pc(uint32_t pc);

uint64_t vsoc_now_us(void);
void vsoc_delay_us(uint32_t us);
void vsoc_timer_start(uint32_t period_us);
void vsoc_timer_stop(void);

uint32_t vsoc_core_id(void);
void vsoc_fatal(uint32_t code) __attribute__((noreturn));
void vsoc_publish_rsc_table(const void *table, uint32_t size);

void vsoc_wdog_start(uint32_t timeout_ms);
void vsoc_wdog_kick(void);
void vsoc_wdog_stop(void);

#endif /* VSOC_H */
