/*
 * startup_m4.c - Cortex-M4 reset and exception entry for the virtual SoC.
 *
 * The vector table sits at TCM address 0 (VTOR's reset value; we also write VTOR so that the
 * firmware does not depend on it). The emulator performs exception entry and return itself, so
 * handlers are plain AAPCS functions.
 */
#include <stdint.h>
#include "vsoc.h"

extern uint32_t _estack;              /* top of the stack (linker script) */
extern uint32_t _sidata, _sdata, _edata;  /* .data: load address in TCM, run address in SRAM */
extern uint32_t _sbss, _ebss;
extern int main(void);
extern void vsoc_timer_irq(void);

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void NMI_Handler(void) __attribute__((weak, alias("Default_Handler")));
void MemManage_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void BusFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("HardFault_Handler")));
void SVC_Handler(void) __attribute__((weak, alias("Default_Handler")));
void PendSV_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
static void Mailbox_IRQHandler(void);
static void Timer_IRQHandler(void);

/* FATAL codes written by the handlers below: 0xDEAD00nn, nn = exception number. */
#define FATAL_EXCEPTION(n) (0xDEAD0000u | (n))

typedef void (*vector_t)(void);

/* Entry 0 is the initial stack pointer, then exceptions 1..15, then IRQ 0.. (exception 16+).
 * Eight IRQ slots: the SoC uses two, the rest catch stray lines in Default_Handler. */
__attribute__((section(".vectors"), used)) const vector_t vsoc_vectors[16 + 8] = {
    (vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    NMI_Handler,
    HardFault_Handler,
    MemManage_Handler,
    BusFault_Handler,
    UsageFault_Handler,
    0, 0, 0, 0,
    SVC_Handler,
    0, 0,
    PendSV_Handler,
    SysTick_Handler,
    Mailbox_IRQHandler,   /* IRQ 0: mailbox */
    Timer_IRQHandler,     /* IRQ 1: timer */
    Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, Default_Handler,
};

/* Naked: the stack pointer may not be set yet when the emulator jumps to the ELF entry point
 * (a loader is not required to read vector 0), so load it before any C code runs. */
__attribute__((naked, noreturn)) void Reset_Handler(void)
{
    __asm__ volatile(
        "ldr r0, =_estack\n\t"
        "mov sp, r0\n\t"
        "b vsoc_c_startup\n\t");
}

__attribute__((noreturn, used)) void vsoc_c_startup(void)
{
    /* The host loads PT_LOAD segments at their physical addresses: .data's initial values
     * arrive in TCM (LMA) and are copied to SRAM (VMA) here; .bss is zeroed (memsz > filesz
     * segments are zeroed by the loader too, but a core restarted by a boot loader is not). */
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;)
        *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;

    mmio_write(SCS_VTOR, 0, (uint32_t)(uintptr_t)vsoc_vectors);
    __asm__ volatile("dsb\n\tisb" ::: "memory");

    main();
    /* main() should not return; if it does, park the core without burning host CPU. */
    vsoc_irq_disable();
    for (;;)
        vsoc_wfi();
}

/* IRQ entry: the hardware (emulator) stacked r0-r3, r12, lr, pc, xpsr at sp. After the
 * handler, vsoc_irq_resume_pc() may move the stacked pc past vsoc_sleep()'s wfi (see vsoc.h).
 * r4 is pushed only to keep the stack 8-byte aligned; the frame is then at sp + 8 and its pc
 * at sp + 8 + 24. Return through bx lr with lr = EXC_RETURN. */
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

IRQ_WRAPPER(Mailbox_IRQHandler, vsoc_mailbox_irq)
IRQ_WRAPPER(Timer_IRQHandler, vsoc_timer_irq)

/* vsoc_sleep(): wfi unless an interrupt was handled since vsoc_sleep_prepare(). The window an
 * interrupt exit skips (vsoc_irq_resume_pc in board.c) is published as three addresses in
 * vsoc_sleep_window; the labels themselves stay local so crash reports say "vsoc_sleep+n". */
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
    "    .type vsoc_sleep_window, %object\n"
    "vsoc_sleep_window:\n"
    "    .word .Lsleep_begin, .Lsleep_wfi, .Lsleep_end\n"
    "    .size vsoc_sleep_window, 12\n"
    "    .text\n");

void HardFault_Handler(void)
{
    /* Faults are vectored here (on hardware and on the emulator, whose crash report then names
     * the fault that brought us here): report through the fatal hook so the host sees a crash. */
    vsoc_fatal(FATAL_EXCEPTION(3));
}

void Default_Handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    vsoc_fatal(FATAL_EXCEPTION(ipsr & 0x1FFu));
}
