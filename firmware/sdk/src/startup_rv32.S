/*
 * startup_rv32.S - RV32IMAC machine-mode reset and trap entry for the virtual SoC.
 *
 * _start is placed at TCM 0 (the ELF entry point). mtvec is used in direct mode: every trap
 * lands in vsoc_trap_entry, which saves the caller-saved registers and calls vsoc_trap() in C
 * (board dispatch in trap_rv32.c). Callee-saved registers are preserved by the C code itself.
 */
    .section .text.init, "ax", @progbits
    .globl _start
    .type _start, @function
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    la sp, _estack

    la t0, vsoc_trap_entry          /* 4-byte aligned, so MODE bits [1:0] = 0 (direct) */
    csrw mtvec, t0
    csrw mie, zero

    /* copy .data from its load address in TCM to SRAM */
    la t0, _sidata
    la t1, _sdata
    la t2, _edata
1:  bgeu t1, t2, 2f
    lw t3, 0(t0)
    sw t3, 0(t1)
    addi t0, t0, 4
    addi t1, t1, 4
    j 1b
2:  /* zero .bss */
    la t1, _sbss
    la t2, _ebss
3:  bgeu t1, t2, 4f
    sw zero, 0(t1)
    addi t1, t1, 4
    j 3b
4:  call main
    /* main() should not return; park the core. */
    csrci mstatus, 8
5:  wfi
    j 5b
    .size _start, . - _start

    .section .text.trap, "ax", @progbits
    .globl vsoc_trap_entry
    .type vsoc_trap_entry, @function
    .balign 4
vsoc_trap_entry:
    addi sp, sp, -64
    sw ra, 0(sp)
    sw t0, 4(sp)
    sw t1, 8(sp)
    sw t2, 12(sp)
    sw a0, 16(sp)
    sw a1, 20(sp)
    sw a2, 24(sp)
    sw a3, 28(sp)
    sw a4, 32(sp)
    sw a5, 36(sp)
    sw a6, 40(sp)
    sw a7, 44(sp)
    sw t3, 48(sp)
    sw t4, 52(sp)
    sw t5, 56(sp)
    sw t6, 60(sp)
    csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    call vsoc_trap                  /* returns the pc to resume at */
    csrw mepc, a0
    lw ra, 0(sp)
    lw t0, 4(sp)
    lw t1, 8(sp)
    lw t2, 12(sp)
    lw a0, 16(sp)
    lw a1, 20(sp)
    lw a2, 24(sp)
    lw a3, 28(sp)
    lw a4, 32(sp)
    lw a5, 36(sp)
    lw a6, 40(sp)
    lw a7, 44(sp)
    lw t3, 48(sp)
    lw t4, 52(sp)
    lw t5, 56(sp)
    lw t6, 60(sp)
    addi sp, sp, 64
    mret
    .size vsoc_trap_entry, . - vsoc_trap_entry

/* vsoc_sleep(): wfi unless an interrupt was handled since vsoc_sleep_prepare(); an interrupt
 * that lands between the check and the wfi resumes after the wfi (vsoc_irq_resume_pc). The
 * window is published in vsoc_sleep_window; the labels stay local so crash reports say
 * "vsoc_sleep+n". */
    .section .text.vsoc_sleep, "ax", @progbits
    .globl vsoc_sleep
    .type vsoc_sleep, @function
vsoc_sleep:
.Lsleep_begin:
    lui t0, %hi(vsoc_wake)
    lw t0, %lo(vsoc_wake)(t0)
    bnez t0, .Lsleep_end
.Lsleep_wfi:
    wfi
.Lsleep_end:
    ret
    .size vsoc_sleep, . - vsoc_sleep

    .section .rodata.vsoc_sleep_window, "a", @progbits
    .balign 4
    .globl vsoc_sleep_window
    .type vsoc_sleep_window, @object
vsoc_sleep_window:
    .4byte .Lsleep_begin, .Lsleep_wfi, .Lsleep_end
    .size vsoc_sleep_window, 12
