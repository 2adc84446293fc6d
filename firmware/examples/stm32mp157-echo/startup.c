/*
 * startup.c - vectors and reset for this example: STM32MP157's Cortex-M4 (the vector table,
 * 16 exceptions + 150 IRQs = 0x298 bytes, in RETRAM at 0; code and data in MCUSRAM:
 * stm32mp157.ld) or STM32MP2's Cortex-M33 (everything in DDR: stm32mp2.ld). IRQ entry follows the SDK's pattern (firmware/sdk/src/
 * startup_m4.c): the handler runs, then vsoc_irq_resume_pc() may move the stacked pc past
 * vsoc_sleep()'s wfi so no wake-up is lost.
 */
#include <stdint.h>
#include "soc.h"
#include "vsoc.h"

extern uint32_t _estack, _sidata, _sdata, _edata, _sbss, _ebss;
extern int main(void);
extern void ipcc_rx_irq(void);
extern void hsem_irq(void);

void Reset_Handler(void);
void Default_Handler(void);
static void IPCC_RX1_IRQHandler(void);
#if SOC_HAS_HSEM
static void HSEM_IT2_IRQHandler(void);
#endif

typedef void (*vector_t)(void);

#define IRQ_WRAPPER(name, handler)                                                        \
    __attribute__((naked)) static void name(void)                                        \
    {                                                                                    \
        __asm__ volatile("push {r4, lr}\n\t"                                              \
                         "bl " #handler "\n\t"                                           \
                         "ldr r0, [sp, #32]\n\t"                                         \
                         "bl vsoc_irq_resume_pc\n\t"                                     \
                         "str r0, [sp, #32]\n\t"                                         \
                         "pop {r4, lr}\n\t"                                              \
                         "bx lr\n\t");                                                   \
    }

IRQ_WRAPPER(IPCC_RX1_IRQHandler, ipcc_rx_irq)
#if SOC_HAS_HSEM
IRQ_WRAPPER(HSEM_IT2_IRQHandler, hsem_irq)
#endif

/* Ranges first, then the two handlers: the later designators win (on purpose). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
__attribute__((section(".vectors"), used)) const vector_t mp1_vectors[16 + NUM_IRQS] = {
    [0] = (vector_t)(uintptr_t)&_estack,
    [1] = Reset_Handler,
    [2 ... 15] = Default_Handler,
    [16 ... 16 + NUM_IRQS - 1] = Default_Handler,
    [16 + IPCC_RX_IRQn] = IPCC_RX1_IRQHandler,
#if SOC_HAS_HSEM
    [16 + HSEM_IT2_IRQn] = HSEM_IT2_IRQHandler,
#endif
};
#pragma GCC diagnostic pop

__attribute__((naked, noreturn)) void Reset_Handler(void)
{
    __asm__ volatile("ldr r0, =_estack\n\tmov sp, r0\n\tb mp1_c_startup\n\t");
}

__attribute__((noreturn, used)) void mp1_c_startup(void)
{
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;)
        *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    SCB_VTOR = (uint32_t)(uintptr_t)mp1_vectors;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    main();
    vsoc_irq_disable();
    for (;;)
        vsoc_wfi();
}

/* vsoc_sleep and its window, as in the SDK (vsoc.h "Sleeping without losing wake-ups"). */
__asm__(
    "    .section .text.vsoc_sleep, \"ax\", %progbits\n"
    "    .global vsoc_sleep\n"
    "    .thumb\n"
    "    .thumb_func\n"
    "    .type vsoc_sleep, %function\n"
    "vsoc_sleep:\n"
    ".Lsleep_begin:\n"
    "    ldr r0, =vsoc_wake\n"
    "    ldr r0, [r0]\n"
    "    cbnz r0, .Lsleep_end\n"
    ".Lsleep_wfi:\n"
    "    wfi\n"
    ".Lsleep_end:\n"
    "    bx lr\n"
    "    .ltorg\n"
    "    .size vsoc_sleep, . - vsoc_sleep\n"
    "    .section .rodata.vsoc_sleep_window, \"a\", %progbits\n"
    "    .balign 4\n"
    "    .global vsoc_sleep_window\n"
    "vsoc_sleep_window:\n"
    "    .word .Lsleep_begin, .Lsleep_wfi, .Lsleep_end\n"
    "    .text\n");

volatile uint32_t vsoc_wake;
extern const uint32_t vsoc_sleep_window[3];

uint32_t vsoc_irq_resume_pc(uint32_t pc)
{
    vsoc_wake = 1;
    if (pc >= (vsoc_sleep_window[0] & ~1u) && pc <= (vsoc_sleep_window[1] & ~1u))
        return vsoc_sleep_window[2] & ~1u;
    return pc;
}

void Default_Handler(void)
{
    /* No FATAL register on this SoC: stop here; the emulator reports a HardFault itself and a
     * debugger shows this function. */
    for (;;)
        __asm__ volatile("bkpt #0");
}
