"""(Support module, no tests.) Tiny bare-metal programs for the emulator's CPU layer, built
with Debian's cross compilers into a cache folder (tests/test_emulator_cpu.py,
benchmarks/bench_emulator.py).

The programs (Cortex-M4 Thumb, RV32IMAC and RV64IMAC from one RISC-V source) do the same:
- enable the mailbox (line 0) and timer (line 1) interrupts and sleep in ``wfi``;
- the mailbox handler drains RX_DATA, adding each id to SRAM[0] and counting in SRAM[8];
- the timer handler acknowledges STATUS and counts in SRAM[4];
- after each wake-up the main loop reads a command word at DDR 0x8000_0000 (cleared when
  taken): 1 read 0x6000_0000 (unmapped), 2 undefined instruction, 3 FATAL = 0x1234,
  4 watchdog 50 ms never kicked, 5 DDR[8] = DDR[4] + 1, 6 timer period = DDR[4] µs,
  7 compute loop of DDR[4] iterations -> DDR[12] result, DDR[16] = 1.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

CMD, ARG, OUT, RESULT, DONE = 0x8000_0000, 0x8000_0004, 0x8000_0008, 0x8000_000C, 0x8000_0010

M4_SRC = r"""
.syntax unified
.thumb
.section .vectors,"a"
.word 0x20001000
.word _start+1
.rept 14
.word 0
.endr
.word mbox_isr+1
.word timer_isr+1
.text
.thumb_func
.global _start
_start:
  ldr r0, =0xE000E100
  movs r1, #3
  str r1, [r0]
  ldr r0, =0x40000000
  movs r1, #1
  str r1, [r0, #0xC]
  cpsie i
loop:
  wfi
  ldr r4, =0x80000000
  ldr r5, [r4]
  cmp r5, #0
  beq loop
  movs r6, #0
  str r6, [r4]
  cmp r5, #1
  beq do_mmu
  cmp r5, #2
  beq do_udf
  cmp r5, #3
  beq do_fatal
  cmp r5, #4
  beq do_wdog
  cmp r5, #5
  beq do_copy
  cmp r5, #6
  beq do_timer
  cmp r5, #7
  beq do_compute
  b loop
.global do_mmu
do_mmu:
  ldr r0, =0x60000000
  ldr r0, [r0]
  b loop
.global do_udf
do_udf:
  udf #7
.global do_fatal
do_fatal:
  ldr r0, =0x40004000
  ldr r1, =0x1234
  str r1, [r0]
  b loop
do_wdog:
  ldr r0, =0x40003000
  movs r1, #50
  str r1, [r0]
  b loop
do_copy:
  ldr r1, [r4, #4]
  adds r1, #1
  str r1, [r4, #8]
  b loop
do_timer:
  ldr r0, =0x40002000
  ldr r1, [r4, #4]
  str r1, [r0, #8]
  b loop
do_compute:
  ldr r0, [r4, #4]
  movs r1, #0
  movs r2, #0
1:
  adds r1, r1, r0
  eors r2, r2, r1
  subs r0, r0, #1
  bne 1b
  str r2, [r4, #12]
  movs r1, #1
  str r1, [r4, #16]
  b loop
.thumb_func
mbox_isr:
  ldr r0, =0x40000000
  ldr r1, [r0]
  adds r3, r1, #1
  beq 2f
  ldr r2, =0x20000000
  ldr r3, [r2]
  adds r3, r3, r1
  str r3, [r2]
  ldr r3, [r2, #8]
  adds r3, #1
  str r3, [r2, #8]
  b mbox_isr
2:
  bx lr
.thumb_func
timer_isr:
  push {r4, lr}
  ldr r0, =0x40002000
  movs r1, #1
  str r1, [r0, #0xC]
  ldr r2, =0x20000000
  ldr r3, [r2, #4]
  adds r3, #1
  str r3, [r2, #4]
  pop {r4, pc}
"""

RV_SRC = r"""
#if __riscv_xlen == 64
#define REG_S sd
#define REG_L ld
#else
#define REG_S sw
#define REG_L lw
#endif
.section .text
.global _start
_start:
  la t0, trap
  csrw mtvec, t0
  li t0, 0x880
  csrw mie, t0
  li s0, 0x40000000
  li t1, 1
  sw t1, 0xC(s0)
  csrsi mstatus, 8
loop:
  wfi
  li s1, 0x80000000
  lw s2, 0(s1)
  beqz s2, loop
  sw zero, 0(s1)
  li t0, 1
  beq s2, t0, do_mmu
  li t0, 2
  beq s2, t0, do_udf
  li t0, 3
  beq s2, t0, do_fatal
  li t0, 4
  beq s2, t0, do_wdog
  li t0, 5
  beq s2, t0, do_copy
  li t0, 6
  beq s2, t0, do_timer
  li t0, 7
  beq s2, t0, do_compute
  j loop
.global do_mmu
do_mmu:
  li t0, 0x60000000
  lw t0, 0(t0)
  j loop
.global do_udf
do_udf:
  .word 0
.global do_fatal
do_fatal:
  li t0, 0x40004000
  li t1, 0x1234
  sw t1, 0(t0)
  j loop
do_wdog:
  li t0, 0x40003000
  li t1, 50
  sw t1, 0(t0)
  j loop
do_copy:
  lw t1, 4(s1)
  addi t1, t1, 1
  sw t1, 8(s1)
  j loop
do_timer:
  li t0, 0x40002000
  lw t1, 4(s1)
  sw t1, 8(t0)
  j loop
do_compute:
  lw a0, 4(s1)
  li a1, 0
  li a2, 0
1:
  add a1, a1, a0
  xor a2, a2, a1
  addi a0, a0, -1
  bnez a0, 1b
  sw a2, 12(s1)
  li a1, 1
  sw a1, 16(s1)
  j loop
.balign 4
trap:
  addi sp, sp, -32
  REG_S t0, 0(sp)
  REG_S t1, 8(sp)
  REG_S t2, 16(sp)
  REG_S t3, 24(sp)
  csrr t0, mcause
  andi t0, t0, 0xff
  li t1, 11
  bne t0, t1, 2f
  li t1, 0x40000000
1:
  lw t2, 0(t1)
  li t3, -1
  beq t2, t3, 3f
  li t3, 0x20000000
  lw t0, 0(t3)
  add t0, t0, t2
  sw t0, 0(t3)
  lw t0, 8(t3)
  addi t0, t0, 1
  sw t0, 8(t3)
  j 1b
2:
  li t1, 0x40002000
  li t2, 1
  sw t2, 0xC(t1)
  li t3, 0x20000000
  lw t0, 4(t3)
  addi t0, t0, 1
  sw t0, 4(t3)
3:
  REG_L t0, 0(sp)
  REG_L t1, 8(sp)
  REG_L t2, 16(sp)
  REG_L t3, 24(sp)
  addi sp, sp, 32
  mret
"""


def _cache_dir() -> Path:
    d = Path(os.environ.get("RPROC_TEST_CACHE", Path(tempfile.gettempdir()) / "rproc-emu-progs"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(arch: str, src: str | None = None) -> bytes:
    """The test program for ``"m4"``, ``"rv32"`` or ``"rv64"`` (built once, cached), or the
    assembly ``src`` built the same way for that architecture."""
    if src is None:
        src = M4_SRC if arch == "m4" else RV_SRC
    digest = hashlib.sha256(src.encode()).hexdigest()[:12]
    out = _cache_dir() / f"prog-{arch}-{digest}.elf"
    if not out.exists():
        s = out.with_suffix(".S")
        s.write_text(src)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        if arch == "m4":
            cmd = ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib",
                   "-Wl,-Ttext=0x100", "-Wl,--section-start=.vectors=0", "-o", str(tmp), str(s)]
        elif arch == "rv32":
            cmd = ["riscv64-unknown-elf-gcc", "-march=rv32imac_zicsr", "-mabi=ilp32",
                   "-nostdlib", "-Wl,-Ttext=0", "-o", str(tmp), str(s)]
        else:
            cmd = ["riscv64-unknown-elf-gcc", "-march=rv64imac_zicsr", "-mabi=lp64",
                   "-mcmodel=medany", "-nostdlib", "-Wl,-Ttext=0", "-o", str(tmp), str(s)]
        subprocess.run(cmd, check=True, capture_output=True)
        tmp.replace(out)
    return out.read_bytes()


def symbol(image: bytes, name: str) -> int:
    import io

    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(image))
    tab = elf.get_section_by_name(".symtab")
    for sym in tab.get_symbol_by_name(name) or []:
        return int(sym["st_value"]) & ~1
    raise KeyError(name)


def compute_expected(n: int) -> int:
    r1 = r2 = 0
    while n:
        r1 = (r1 + n) & 0xFFFF_FFFF
        r2 ^= r1
        n -= 1
    return r2
