/*
 * stm32mp157-echo - rpmsg echo for the STM32MP157's Cortex-M4 (and, built with -DSOC_STM32MP257 /
 * -DSOC_STM32MP215, for the STM32MP2's Cortex-M33: IPCC1, USART2 and the rpmsg part only),
 * written against the SoC's real registers (stm32mp157.h, stm32mp2.h): what vendor OpenAMP
 * firmware does at boot, without vendor code.
 *
 * Boot: enable the HSEM, IPCC and UART7 clocks (RCC_MC_*ENSETR, read back through ENCLRR), wait
 * for the clock tree's ready flags (RCC OCRDYR.HSIRDY, PLL3CR.PLLRDY, MSSCKSELR.MCUSSRCRDY,
 * MCUDIVR/APB1DIVR ready) and for the backup regulator (PWR_CR2.BREN -> BRRDY), bring up the
 * UART7 console (TE, wait TEACK), publish the resource table in TAMP_BKP17R, then:
 *   HSEM: lock semaphore 5 in two steps as process 1 and read it back (core 2, process 1),
 *         free it; read-lock semaphore 7 in one step: if the host holds it, say so, enable its
 *         interrupt and report "hsem: 7 freed" when the host releases it.
 *   rpmsg: announce "rpmsg-tty" (1024) and "rpmsg-raw" (1025); echo every message. The vring
 *         kicks go through the IPCC (mbox_ipcc.c); SHUTDOWN is traced before the host stops us.
 * Every step is traced (trace buffer + UART7 console).
 */
#include "rpmsg.h"
#include "rsc_table.h"
#include "soc.h"
#include "trace.h"
#include "vsoc.h"

struct mp1_rsc_table {
    struct fw_resource_table hdr;
    uint32_t offset[2];
    struct rsc_rpmsg_vdev_entry vdev;
    struct rsc_trace_entry trace;
} __attribute__((packed));

RSC_TABLE_SECTION struct mp1_rsc_table resource_table = {
    .hdr = { 1, 2, { 0, 0 } },
    .offset = { __builtin_offsetof(struct mp1_rsc_table, vdev),
                __builtin_offsetof(struct mp1_rsc_table, trace) },
    .vdev = RSC_RPMSG_VDEV_ENTRY(16, 16),
    .trace = RSC_TRACE_ENTRY(vsoc_trace_buf, VSOC_TRACE_SIZE, "trace0"),
};

void console_putc(char c)
{
    while (!(USART_ISR(CONSOLE_UART) & USART_ISR_TXE))
        ;
    USART_TDR(CONSOLE_UART) = (uint8_t)c;
}

#if SOC_HAS_HSEM
static void wait_set(volatile uint32_t *reg, uint32_t bit, const char *what)
{
    uint32_t spins = 0;
    while (!(*reg & bit))
        spins++;
    trace_printf("ready: %s (%u polls)", what, spins);
}

/* Not inlined: crash reports and the unknown-access log name it (tests rely on that). */
__attribute__((noinline)) static void clocks_init(void)
{
    RCC_MC_AHB3ENSETR = RCC_MC_AHB3ENSETR_HSEMEN | RCC_MC_AHB3ENSETR_IPCCEN;
    RCC_MC_APB1ENSETR = RCC_MC_APB1ENSETR_UART7EN;
    /* Set/clear pairs read back the enable state from either register. */
    uint32_t on = RCC_MC_AHB3ENCLRR & (RCC_MC_AHB3ENSETR_HSEMEN | RCC_MC_AHB3ENSETR_IPCCEN);
    wait_set(&RCC_OCRDYR, RCC_OCRDYR_HSIRDY, "HSI");
    wait_set(&RCC_PLL3CR, RCC_PLLxCR_PLLRDY, "PLL3");
    wait_set(&RCC_MSSCKSELR, RCC_MSSCKSELR_MCUSSRCRDY, "MCU clock source");
    wait_set(&RCC_MCUDIVR, RCC_MCUDIVR_MCUDIVRDY, "MCU divider");
    wait_set(&RCC_APB1DIVR, RCC_APBxDIVR_RDY, "APB1 divider");
    PWR_CR2 |= PWR_CR2_BREN;
    wait_set(&PWR_CR2, PWR_CR2_BRRDY, "backup regulator");
    trace_printf("rcc: AHB3 clocks 0x%x", on);
}

#endif

static void uart_init(void)
{
    USART_BRR(CONSOLE_UART) = 64000000u / 115200u;
    USART_CR1(CONSOLE_UART) = USART_CR1_UE | USART_CR1_TE;
    while (!(USART_ISR(CONSOLE_UART) & USART_ISR_TEACK))
        ;
}

/* ---- HSEM ---------------------------------------------------------------------------------- */
#if SOC_HAS_HSEM

#define SEM_OWN  5u
#define SEM_HOST 7u
#define PROC_ID  1u

static volatile int hsem_waiting;

static void hsem_demo(void)
{
    uint32_t mine = HSEM_LOCK | (HSEM_CPU2_COREID << HSEM_COREID_POS) | PROC_ID;
    HSEM_R(SEM_OWN) = mine;                       /* 2-step lock: write, then read back */
    uint32_t got = HSEM_R(SEM_OWN);
    trace_printf("hsem: %u %s (0x%x)", SEM_OWN, got == mine ? "locked by core 2" : "not taken",
                 got);
    HSEM_R(SEM_OWN) = (HSEM_CPU2_COREID << HSEM_COREID_POS) | PROC_ID;   /* free */
    trace_printf("hsem: %u free again (0x%x)", SEM_OWN, HSEM_R(SEM_OWN));

    uint32_t owner = HSEM_RLR(SEM_HOST);          /* 1-step lock */
    uint32_t core = (owner >> HSEM_COREID_POS) & 0xFu;
    if (core == HSEM_CPU2_COREID) {
        trace_printf("hsem: %u locked by core 2 (1-step)", SEM_HOST);
        HSEM_R(SEM_HOST) = HSEM_CPU2_COREID << HSEM_COREID_POS;
    } else {
        trace_printf("hsem: %u busy (core %u)", SEM_HOST, core);
        hsem_waiting = 1;
        HSEM_C2IER = 1u << SEM_HOST;
        nvic_enable(HSEM_IT2_IRQn);
    }
}

void hsem_irq(void)
{
    uint32_t freed = HSEM_C2MISR;
    HSEM_C2ICR = freed;
    if (freed & (1u << SEM_HOST) && hsem_waiting) {
        hsem_waiting = 0;
        trace_printf("hsem: %u freed", SEM_HOST);
    }
}

#endif /* SOC_HAS_HSEM */

/* ---- rpmsg --------------------------------------------------------------------------------- */

static struct rpmsg_endpoint tty_ept, raw_ept;

static void echo_cb(struct rpmsg_endpoint *ept, const void *data, size_t len, uint32_t src,
                    void *priv)
{
    (void)priv;
    rpmsg_send(ept, src, data, len);
}

void mbox_ack_shutdown(void);   /* mbox_ipcc.c */

static void ctrl_hook(uint32_t word)
{
    if (word == MBOX_CTRL_SHUTDOWN) {
        trace_printf("shutdown requested");
        mbox_ack_shutdown();
    }
}

int main(void)
{
#if SOC_HAS_HSEM
    clocks_init();
    uart_init();
    TAMP_BKP17R = (uint32_t)(uintptr_t)&resource_table;
    TAMP_BKP18R = COPRO_STATE_CRUN;
    trace_printf("stm32mp157-echo: idcode 0x%x, ipcc %u channels, mpu type 0x%x",
                 DBGMCU_IDCODE, IPCC_HWCFGR & 0xFFu, SCB_MPU_TYPE);
    hsem_demo();
#else
    uart_init();
    trace_printf("%s-echo: ipcc %u channels", SOC_NAME, IPCC_HWCFGR & 0xFFu);
#endif
    rpmsg_init(&resource_table.vdev.vdev);
    rpmsg_set_ctrl_hook(ctrl_hook);
    rpmsg_enable_detach(1);
    rpmsg_create_ept(&tty_ept, "rpmsg-tty", RPMSG_ADDR_ANY, echo_cb, 0);
    rpmsg_create_ept(&raw_ept, "rpmsg-raw", RPMSG_ADDR_ANY, echo_cb, 0);
    vsoc_irq_enable();
    rpmsg_run();
}
