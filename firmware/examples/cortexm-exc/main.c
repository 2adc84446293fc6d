/*
 * cortexm-exc - exercises the Cortex-M exception model the way an RTOS does, written against
 * the ARMv7-M / ARMv8-M register layouts (SCB at 0xE000ED00, NVIC at 0xE000E100, SysTick at
 * 0xE000E010). Built for the Cortex-M4F (ARMv7-M, FPv4-SP) and the Cortex-M33 (ARMv8-M
 * Mainline, non-secure, FPv5-SP). Standalone: no SDK, its own vectors and startup.
 *
 * The host writes a scenario number at DDR 0x80000000 before it boots the image; results go
 * to DDR 0x80000100 (RES[0] = 0x600D when the scenario finished, RES[1] = error bits):
 *   1 threads:  two threads on PSP switched by PendSV (pended from SVC #1), started by SVC #0
 *               returning with a literal EXC_RETURN; SVC #42 doubles the caller's r0;
 *               r4-r11 checked across every switch.
 *   2 fp:       the same with both threads using all 32 FP registers (extended frames,
 *               s16-s31 saved by PendSV when EXC_RETURN bit 4 is clear).
 *   3 systick:  SysTick every 10000 instructions over a 1,000,000-instruction loop; CVR read
 *               around 20 known instructions; COUNTFLAG read-to-clear.
 *   4 prio:     BASEPRI, PRIMASK, FAULTMASK masking; preemption and tail-chaining by NVIC_IPR;
 *               PRIGROUP sub-priorities; ICSR.VECTACTIVE, NVIC_IABR.
 *   5 faults:   a UsageFault (udf), a BusFault (unmapped read, BFAR) and a forced HardFault,
 *               each handled by the firmware, which skips the instruction and goes on.
 *   6 crash:    an unmapped read with BusFault disabled: the HardFault handler reports FATAL.
 *   7 lockup:   udf with UsageFault disabled, and a fault inside the HardFault handler.
 *   8 sleep:    SysTick at 1 kHz of the core clock (from SYST_CALIB.TENMS); 100 ticks in wfi.
 *   9 bench:    emu_mips_irq: SysTick at 1 kHz switching two threads on every tick while both
 *               compute; RES[2] = loop iterations (4 instructions each) done, RES[3] = thread
 *               switches, RES[4] = microseconds it took (the SoC timer).
 *  10 the same loop without SysTick (thread 0 alone): the baseline of scenario 9.
 *  11 align:    an interrupt taken with SP = 4 mod 8 (frame aligned down, xPSR bit 9, SP
 *               restored); unprivileged thread mode (CONTROL.nPRIV) kept across exceptions,
 *               dropped by an SVC handler.
 */
#include <stdint.h>

#define REG(a) (*(volatile uint32_t *)(a))
#define REG8(a) (*(volatile uint8_t *)(a))

#define SYST_CSR   0xE000E010u
#define SYST_RVR   0xE000E014u
#define SYST_CVR   0xE000E018u
#define SYST_CALIB 0xE000E01Cu
#define NVIC_ISER  0xE000E100u
#define NVIC_ICER  0xE000E180u
#define NVIC_ISPR  0xE000E200u
#define NVIC_ICPR  0xE000E280u
#define NVIC_IABR  0xE000E300u
#define NVIC_IPR   0xE000E400u
#define SCB_ICSR   0xE000ED04u
#define SCB_VTOR   0xE000ED08u
#define SCB_AIRCR  0xE000ED0Cu
#define SCB_SHPR   0xE000ED18u   /* byte n-4 = priority of exception n */
#define SCB_SHCSR  0xE000ED24u
#define SCB_CFSR   0xE000ED28u
#define SCB_HFSR   0xE000ED2Cu
#define SCB_BFAR   0xE000ED38u
#define SCB_CPACR  0xE000ED88u
#define FATAL_REG  0x40004000u  /* the virtual SoC's fatal-error register */
#define TIMER_NOW_US 0x40002000u /* the virtual SoC's microsecond clock (low word) */

#define ICSR_PENDSVSET (1u << 28)
#define CMD (*(volatile uint32_t *)0x80000000u)
#define RES ((volatile uint32_t *)0x80000100u)
#define LOG ((volatile uint32_t *)0x80000200u)

#if defined(__ARM_ARCH_8M_MAIN__)
#define EXC_RETURN_THREAD_PSP "0xFFFFFFBC"
#else
#define EXC_RETURN_THREAD_PSP "0xFFFFFFFD"
#endif

extern uint32_t _estack;
void Reset_Handler(void);
void HardFault_Handler(void);
void MemManage_Handler(void);
void BusFault_Handler(void);
void UsageFault_Handler(void);
void SVC_Handler(void);
void PendSV_Handler(void);
void SysTick_Handler(void);
void Default_Handler(void);
void Irq_Handler(void);
void Align_Handler(void);

typedef void (*vector_t)(void);
__attribute__((section(".vectors"), used)) const vector_t vectors[16 + 16] = {
    (vector_t)(uintptr_t)&_estack, Reset_Handler, Default_Handler, HardFault_Handler,
    MemManage_Handler, BusFault_Handler, UsageFault_Handler, 0, 0, 0, 0, SVC_Handler,
    Default_Handler, 0, PendSV_Handler, SysTick_Handler,
    Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler,
    Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler, Irq_Handler,
    Irq_Handler, Align_Handler,
};

static volatile uint32_t nlog;
static void logev(uint32_t ev) { LOG[nlog++ & 63] = ev; }
static void fail(uint32_t bit) { RES[1] |= bit; }

static inline uint32_t get_ipsr(void) { uint32_t v; __asm__ volatile("mrs %0, ipsr" : "=r"(v)); return v; }
static inline uint32_t get_control(void) { uint32_t v; __asm__ volatile("mrs %0, control" : "=r"(v)); return v; }
static inline void set_basepri(uint32_t v) { __asm__ volatile("msr basepri, %0" :: "r"(v) : "memory"); }
static inline void isb(void) { __asm__ volatile("dsb\n\tisb" ::: "memory"); }

/* ---- threads (scenarios 1, 2, 9) ------------------------------------------------------------- */

#define STACK_WORDS 512
static uint32_t stacks[2][STACK_WORDS] __attribute__((aligned(8)));
volatile uint32_t thread_sp[2];
volatile uint32_t current;
volatile uint32_t switches;
volatile uint32_t pendsv_lr;
static volatile uint32_t counts[2];
static volatile uint32_t scenario;

/* PendSV: save r4-r11 (and s16-s31 when the frame is extended) on the outgoing thread's PSP,
 * switch, restore. lr is the EXC_RETURN the hardware gave, kept with the thread. */
__attribute__((naked)) void PendSV_Handler(void)
{
    __asm__ volatile(
        "mrs r0, psp\n\t"
        "tst lr, #0x10\n\t"
        "it eq\n\t"
        "vstmdbeq r0!, {s16-s31}\n\t"
        "stmdb r0!, {r4-r11, lr}\n\t"
        "ldr r1, =current\n\t"
        "ldr r2, [r1]\n\t"
        "ldr r3, =thread_sp\n\t"
        "str r0, [r3, r2, lsl #2]\n\t"
        "eor r2, r2, #1\n\t"
        "str r2, [r1]\n\t"
        "ldr r0, [r3, r2, lsl #2]\n\t"
        "ldmia r0!, {r4-r11, lr}\n\t"
        "tst lr, #0x10\n\t"
        "it eq\n\t"
        "vldmiaeq r0!, {s16-s31}\n\t"
        "msr psp, r0\n\t"
        "ldr r1, =pendsv_lr\n\t"
        "str lr, [r1]\n\t"
        "ldr r1, =switches\n\t"
        "ldr r2, [r1]\n\t"
        "adds r2, r2, #1\n\t"
        "str r2, [r1]\n\t"
        "bx lr\n\t");
}

/* SVC: #0 starts thread 0 (returning with a literal EXC_RETURN), #1 yields (pends PendSV),
 * #42 doubles the caller's r0 in its frame. */
__attribute__((naked)) void SVC_Handler(void)
{
    __asm__ volatile(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "b svc_dispatch\n\t");
}

__attribute__((used)) void svc_dispatch(uint32_t *frame)
{
    uint32_t num = ((uint8_t *)frame[6])[-2];
    if (get_ipsr() != 11)
        fail(1u << 0);
    if (num == 1) {
        REG(SCB_ICSR) = ICSR_PENDSVSET;
    } else if (num == 42) {
        frame[0] *= 2;
    } else if (num == 2) {
        __asm__ volatile("mrs r0, control\n\tbic r0, r0, #1\n\tmsr control, r0\n\tisb"
                         ::: "r0", "memory");
    } else if (num == 0) {
        __asm__ volatile(
            "ldr r0, =thread_sp\n\t"
            "ldr r0, [r0]\n\t"
            "ldmia r0!, {r4-r11, lr}\n\t"
            "msr psp, r0\n\t"
            "ldr lr, =" EXC_RETURN_THREAD_PSP "\n\t"
            "bx lr\n\t" ::: "memory");
    }
}

static void yield(void) { __asm__ volatile("svc #1" ::: "memory"); }

static uint32_t regs_survive(uint32_t seed)
{
    uint32_t bad;
    __asm__ volatile(
        "mov r4, %1\n\t"
        "add r5, r4, #1\n\t"
        "add r6, r4, #2\n\t"
        "add r7, r4, #3\n\t"
        "add r8, r4, #4\n\t"
        "add r9, r4, #5\n\t"
        "add r10, r4, #6\n\t"
        "add r11, r4, #7\n\t"
        "svc #1\n\t"
        "eor %0, r4, %1\n\t"
        "sub r5, r5, r4\n\t" "eor r5, r5, #1\n\t" "orr %0, %0, r5\n\t"
        "sub r6, r6, r4\n\t" "eor r6, r6, #2\n\t" "orr %0, %0, r6\n\t"
        "sub r7, r7, r4\n\t" "eor r7, r7, #3\n\t" "orr %0, %0, r7\n\t"
        "sub r8, r8, r4\n\t" "eor r8, r8, #4\n\t" "orr %0, %0, r8\n\t"
        "sub r9, r9, r4\n\t" "eor r9, r9, #5\n\t" "orr %0, %0, r9\n\t"
        "sub r10, r10, r4\n\t" "eor r10, r10, #6\n\t" "orr %0, %0, r10\n\t"
        "sub r11, r11, r4\n\t" "eor r11, r11, #7\n\t" "orr %0, %0, r11\n\t"
        : "=&r"(bad) : "r"(seed)
        : "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "memory");
    return bad;
}

static float fpin[2][32], fpout[2][32];

__attribute__((noinline)) static uint32_t fp_survives(uint32_t id)
{
    volatile float *in = fpin[id], *out = fpout[id];
    __asm__ volatile(
        "vldmia %0, {s0-s31}\n\t"
        "svc #1\n\t"
        "vadd.f32 s0, s0, s0\n\t"
        "vstmia %1, {s0-s31}\n\t"
        :: "r"(in), "r"(out)
        : "memory", "d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7",
          "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15");
    uint32_t bad = out[0] != in[0] * 2.0f;
    for (int i = 1; i < 32; i++)
        bad |= out[i] != in[i];
    return bad;
}

#define ROUNDS 500

static void thread_main(uint32_t id)
{
    if (!(get_control() & 2))
        fail(1u << 1);  /* threads run on PSP */
    if (scenario == 2) {  /* only then do the threads touch the FPU (CONTROL.FPCA) */
        for (uint32_t i = 0; i < 32; i++)
            fpin[id][i] = (float)(id * 100 + i) + 0.5f;
    }
    for (uint32_t round = 0; round < ROUNDS; round++) {
        uint32_t r0;
        if (scenario >= 9) {
            /* emu_mips_irq: compute; SysTick switches the threads */
            register uint32_t n __asm__("r0") = 100000;
            __asm__ volatile(
                "movs r1, #0\n\t"
                "1:\n\t"
                "adds r1, r1, r0\n\t"
                "eors r1, r1, #0x5a\n\t"
                "subs r0, r0, #1\n\t"
                "bne 1b\n\t" : "+r"(n) :: "r1", "cc");
            counts[id] += 100000;
            if (counts[0] + counts[1] >= 40000000u) {
                REG(SYST_CSR) = 0;
                RES[4] = REG(TIMER_NOW_US) - RES[4];
                RES[2] = counts[0] + counts[1];
                RES[3] = switches;
                RES[0] = 0x600D;
                for (;;)
                    __asm__ volatile("wfi");
            }
            continue;
        }
        if (regs_survive(0x10000 * (id + 1) + round))
            fail(1u << 2);
        if (scenario == 2 && fp_survives(id))
            fail(1u << 3);
        __asm__ volatile("mov r0, %1\n\tsvc #42\n\tmov %0, r0" : "=r"(r0) : "r"(round + 7) : "r0");
        if (r0 != 2 * (round + 7))
            fail(1u << 4);
        counts[id]++;
    }
    if (id == 0) {
        while (counts[1] < ROUNDS)
            yield();
        RES[2] = counts[0];
        RES[3] = counts[1];
        RES[4] = switches;
        RES[5] = pendsv_lr;
        RES[6] = get_control();
        RES[0] = 0x600D;
        for (;;)
            __asm__ volatile("wfi");
    }
    for (;;)
        yield();
}

static void thread0(void) { thread_main(0); }
static void thread1(void) { thread_main(1); }

static void make_thread(uint32_t id, void (*entry)(void))
{
    uint32_t *sp = &stacks[id][STACK_WORDS];
    *--sp = 0x01000000u;                        /* xPSR: Thumb */
    *--sp = (uint32_t)(uintptr_t)entry & ~1u;   /* pc */
    *--sp = 0xFFFFFFFFu;                        /* lr */
    for (int i = 0; i < 5; i++)
        *--sp = 0;                              /* r12, r3, r2, r1, r0 */
    *--sp = 0xFFFFFFFDu;                        /* EXC_RETURN for PendSV's ldmia (overwritten by SVC #0) */
#if defined(__ARM_ARCH_8M_MAIN__)
    sp[0] = 0xFFFFFFBCu;
#endif
    for (int i = 0; i < 8; i++)
        *--sp = 0;                              /* r11 .. r4 */
    thread_sp[id] = (uint32_t)(uintptr_t)sp;
}

static void run_threads(void)
{
    REG8(SCB_SHPR + 14 - 4) = 0xF0;  /* PendSV: lowest */
    REG8(SCB_SHPR + 15 - 4) = 0x00;  /* SysTick: highest configurable */
    make_thread(0, thread0);
    make_thread(1, thread1);
    if (scenario == 10)
        RES[4] = REG(TIMER_NOW_US);
    if (scenario == 9) {
        /* 1 kHz of the core clock: TENMS is the count for 10 ms */
        uint32_t tenms = (REG(SYST_CALIB) & 0xFFFFFFu) + 1;
        REG(SYST_RVR) = tenms / 10 - 1;
        REG(SYST_CVR) = 0;
        RES[4] = REG(TIMER_NOW_US);
        REG(SYST_CSR) = 7;
    }
    __asm__ volatile("svc #0" ::: "memory");
    fail(1u << 5);  /* never returns */
}

/* ---- SysTick (scenarios 3, 8, 9) -------------------------------------------------------- */

static volatile uint32_t ticks;

void SysTick_Handler(void)
{
    ticks++;
    if (scenario == 9)
        REG(SCB_ICSR) = ICSR_PENDSVSET;
}

static void systick_count(void)
{
    REG(SYST_RVR) = 9999;  /* a tick every 10000 instructions */
    REG(SYST_CVR) = 0;
    REG(SYST_CSR) = 7;     /* CLKSOURCE | TICKINT | ENABLE */
    register uint32_t n __asm__("r0") = 250000;  /* 4 instructions per iteration */
    __asm__ volatile(
        "1:\n\t"
        "nop\n\t"
        "nop\n\t"
        "subs r0, r0, #1\n\t"
        "bne 1b\n\t" : "+r"(n) :: "cc");
    REG(SYST_CSR) = 0;
    RES[2] = ticks;
    /* CVR counts down by one per instruction: read it around 20 instructions (with
     * interrupts masked, no tick in between) */
    REG(SYST_RVR) = 0xFFFFFF;
    REG(SYST_CVR) = 0;
    REG(SYST_CSR) = 5;     /* no TICKINT */
    uint32_t a, b;
    __asm__ volatile(
        "ldr %0, [%2]\n\t"
        "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t"
        "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t"
        "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t"
        "nop\n\t" "nop\n\t" "nop\n\t" "nop\n\t"
        "ldr %1, [%2]\n\t"
        : "=&r"(a), "=&r"(b) : "r"(SYST_CVR) : "memory");
    RES[3] = a - b;  /* 20: the 19 nops and the second ldr */
    /* COUNTFLAG: set by a wrap, cleared by reading CSR */
    REG(SYST_CSR) = 0;
    REG(SYST_RVR) = 99;
    REG(SYST_CVR) = 0;
    REG(SYST_CSR) = 5;
    for (volatile int i = 0; i < 100; i++) {
    }
    uint32_t c1 = REG(SYST_CSR), c2 = REG(SYST_CSR);
    REG(SYST_CSR) = 0;
    RES[4] = (c1 >> 16) & 1;
    RES[5] = (c2 >> 16) & 1;
    RES[0] = 0x600D;
}

static void systick_sleep(void)
{
    uint32_t tenms = (REG(SYST_CALIB) & 0xFFFFFFu) + 1;
    REG(SYST_RVR) = tenms / 10 - 1;
    REG(SYST_CVR) = 0;
    REG(SYST_CSR) = 7;
    while (ticks < 100)
        __asm__ volatile("wfi");
    REG(SYST_CSR) = 0;
    RES[2] = ticks;
    RES[0] = 0x600D;
}

/* ---- priorities and masks (scenario 4) -------------------------------------------------- */

static volatile uint32_t taken[16];

void Irq_Handler(void)
{
    uint32_t irq = get_ipsr() - 16;
    logev(0x100 | irq);
    taken[irq]++;
    if (!(REG(NVIC_IABR) & (1u << irq)))
        fail(1u << 6);
    if ((REG(SCB_ICSR) & 0x1FF) != irq + 16)
        fail(1u << 7);
    if (irq == 5) {
        REG(NVIC_ISPR) = (1u << 7) | (1u << 6);  /* 6 preempts at once, 7 waits for us */
        logev(0x205);
        if (taken[6] != 1)
            fail(1u << 8);
        if (taken[7] != 0)
            fail(1u << 9);
    } else if (irq == 9) {
        REG(NVIC_ISPR) = 1u << 8;  /* preempts only if its group priority is higher */
        logev(0x209);
    }
    logev(0x300 | irq);
}

static void prio_tests(void)
{
    REG(NVIC_ISER) = 0x3E0;  /* IRQs 5..9 */
    REG8(NVIC_IPR + 5) = 0x80;
    REG8(NVIC_IPR + 6) = 0x40;
    REG8(NVIC_IPR + 7) = 0xC0;
    REG8(NVIC_IPR + 8) = 0x40;
    REG8(NVIC_IPR + 9) = 0x50;

    /* BASEPRI: 6 (0x40) gets through a 0x80 mask at once, 5 (0x80) waits for the unmask */
    set_basepri(0x80);
    REG(NVIC_ISPR) = 1u << 5;
    for (volatile int i = 0; i < 10; i++) {
    }
    if (taken[5] != 0)
        fail(1u << 10);
    if (!(REG(NVIC_ISPR) & (1u << 5)) || (((REG(SCB_ICSR) >> 12) & 0x1FF) != 21))
        fail(1u << 11);   /* ISPR and ICSR.VECTPENDING show it */
    set_basepri(0);
    /* taken before the next instruction: 5, which preempts itself with 6, then 7 chained */
    uint32_t t5 = taken[5];
    RES[2] = t5;
    /* PRIMASK */
    __asm__ volatile("cpsid i" ::: "memory");
    REG(NVIC_ISPR) = 1u << 6;
    uint32_t masked = taken[6];
    __asm__ volatile("cpsie i" ::: "memory");
    uint32_t unmasked = taken[6];
    RES[3] = (masked << 8) | unmasked;  /* 0x0102 */
    /* FAULTMASK */
    __asm__ volatile("cpsid f" ::: "memory");
    REG(NVIC_ISPR) = 1u << 6;
    masked = taken[6];
    __asm__ volatile("cpsie f" ::: "memory");
    unmasked = taken[6];
    RES[4] = (masked << 8) | unmasked;  /* 0x0203 */
    /* PRIGROUP 0: 8 (0x40) preempts 9 (0x50). PRIGROUP 5: same group, it waits. */
    logev(0xA0);
    REG(NVIC_ISPR) = 1u << 9;
    logev(0xA1);
    REG(SCB_AIRCR) = (0x05FAu << 16) | (5u << 8);
    REG(NVIC_ISPR) = 1u << 9;
    logev(0xA2);
    REG(SCB_AIRCR) = (0x05FAu << 16);
    RES[5] = nlog;
    RES[0] = 0x600D;
}

/* ---- stack alignment and nPRIV (scenario 11) ----------------------------------------- */

/* IRQ 15: records the stacked xPSR and where the frame is. */
__attribute__((naked)) void Align_Handler(void)
{
    __asm__ volatile(
        "mrs r0, msp\n\t"
        "ldr r1, [r0, #28]\n\t"
        "ldr r2, =0x80000100\n\t"
        "str r1, [r2, #8]\n\t"
        "str r0, [r2, #12]\n\t"
        "bx lr\n\t");
}

static void align_npriv(void)
{
    REG(NVIC_ISER) = 1u << 15;
    /* An interrupt taken with SP = 4 (mod 8): the frame is aligned down, xPSR bit 9 set, and
     * SP comes back as it was. */
    uint32_t before, after;
    __asm__ volatile(
        "mov r5, sp\n\t"
        "bic r6, r5, #7\n\t"
        "sub r6, r6, #4\n\t"
        "mov sp, r6\n\t"
        "mov r0, %2\n\t"
        "mov r1, #0x8000\n\t"
        "str r1, [r0]\n\t"
        "isb\n\t"
        "mov %1, sp\n\t"
        "mov %0, r6\n\t"
        "mov sp, r5\n\t"
        : "=&r"(before), "=&r"(after) : "r"(NVIC_ISPR) : "r0", "r1", "r5", "r6", "memory");
    RES[4] = before;
    RES[5] = after;
    /* Unprivileged thread mode: msr basepri is ignored; svc #2 (privileged) drops nPRIV. */
    __asm__ volatile("mrs r0, control\n\torr r0, r0, #1\n\tmsr control, r0\n\tisb"
                     ::: "r0", "memory");
    RES[6] = get_control();
    set_basepri(0x40);
    uint32_t bp;
    __asm__ volatile("mrs %0, basepri" : "=r"(bp));
    RES[7] = bp;
    __asm__ volatile("svc #2" ::: "memory");
    RES[8] = get_control();
    set_basepri(0x40);
    __asm__ volatile("mrs %0, basepri" : "=r"(bp));
    RES[9] = bp;
    set_basepri(0);
    RES[0] = 0x600D;
}

/* ---- faults (scenarios 5, 6, 7) --------------------------------------------------------- */

static volatile uint32_t fault_seen[8];

static void skip_insn(uint32_t *frame)
{
    uint16_t op = *(uint16_t *)frame[6];
    frame[6] += (op & 0xE000) == 0xE000 && (op & 0x1800) ? 4 : 2;
}

__attribute__((used)) void fault_dispatch(uint32_t *frame, uint32_t exc)
{
    if (scenario == 7 && exc == 3) {
        __asm__ volatile("udf #3");  /* a fault in the HardFault handler: lockup */
    }
    if (scenario == 6) {
        REG(FATAL_REG) = 0xDEAD0000u | exc;  /* report, like an SDK would */
        for (;;)
            __asm__ volatile("wfi");
    }
    fault_seen[exc]++;
    RES[8 + exc] = REG(SCB_CFSR);
    if (exc == 3)
        RES[15] = REG(SCB_HFSR);
    if (exc == 5)
        RES[16] = REG(SCB_BFAR);
    RES[17] = frame[6];
    REG(SCB_CFSR) = REG(SCB_CFSR);  /* write 1 to clear */
    REG(SCB_HFSR) = REG(SCB_HFSR);
    skip_insn(frame);
}

#define FAULT_ENTRY(name, n)                                                             \
    __attribute__((naked)) void name(void)                                               \
    {                                                                                    \
        __asm__ volatile("tst lr, #4\n\t"                                                \
                         "ite eq\n\t"                                                    \
                         "mrseq r0, msp\n\t"                                             \
                         "mrsne r0, psp\n\t"                                             \
                         "movs r1, #" #n "\n\t"                                          \
                         "push {r4, lr}\n\t"                                             \
                         "bl fault_dispatch\n\t"                                         \
                         "pop {r4, pc}\n\t");                                            \
    }

FAULT_ENTRY(HardFault_Handler, 3)
FAULT_ENTRY(MemManage_Handler, 4)
FAULT_ENTRY(BusFault_Handler, 5)
FAULT_ENTRY(UsageFault_Handler, 6)

__attribute__((noinline, used)) void do_udf(void) { __asm__ volatile("udf #1"); }
__attribute__((noinline, used)) uint32_t do_bad_read(void) { return REG(0x60000000u); }

static void fault_tests(void)
{
    REG(SCB_SHCSR) |= (1u << 18) | (1u << 17);  /* USGFAULTENA, BUSFAULTENA */
    do_udf();
    RES[2] = fault_seen[6];
    (void)do_bad_read();
    RES[3] = fault_seen[5];
    REG(SCB_SHCSR) &= ~((1u << 18) | (1u << 17));
    do_udf();  /* UsageFault disabled: escalates to HardFault (HFSR.FORCED) */
    RES[4] = fault_seen[3];
    RES[0] = 0x600D;
}

/* ---- startup --------------------------------------------------------------------------- */

void Default_Handler(void)
{
    REG(FATAL_REG) = 0xDEAD0000u | get_ipsr();
    for (;;)
        __asm__ volatile("wfi");
}

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;

__attribute__((naked, noreturn)) void Reset_Handler(void)
{
    __asm__ volatile("ldr r0, =_estack\n\tmov sp, r0\n\tb c_startup\n\t");
}

__attribute__((noreturn, used)) void c_startup(void)
{
    uint32_t *src = &_sidata;
    for (uint32_t *dst = &_sdata; dst < &_edata;)
        *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;)
        *dst++ = 0;
    REG(SCB_VTOR) = (uint32_t)(uintptr_t)vectors;
    REG(SCB_CPACR) |= 0xFu << 20;  /* CP10, CP11: full access to the FPU */
    isb();
    scenario = CMD;
    RES[0] = 0;
    RES[1] = 0;
    switch (scenario) {
    case 1: case 2: case 9: case 10: run_threads(); break;
    case 3: systick_count(); break;
    case 4: prio_tests(); break;
    case 5: fault_tests(); break;
    case 6: (void)do_bad_read(); break;  /* BusFault disabled: HardFault, which reports */
    case 7: do_udf(); break;             /* HardFault, which faults: lockup */
    case 8: systick_sleep(); break;
    case 11: align_npriv(); break;
    default: RES[0] = 0xBAD; break;
    }
    for (;;)
        __asm__ volatile("wfi");
}

/* A resource table with no entries: the host needs nothing from this image. */
__attribute__((section(".resource_table"), used)) const uint32_t resource_table[4] = {1, 0, 0, 0};
