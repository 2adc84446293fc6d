/*
 * pattern.S - 8 MiB of initialised data in shared DDR (section .ddr, see ld/m4.ld, ld/rv32.ld).
 *
 * 2048 pages of 4 KiB. Each page starts with its own device address and its index, followed by
 * 1022 copies of (0xB16B0000 | index). Not zeros (that would become a memsz-only segment and
 * load instantly) but regular enough that git and the host's page cache compress it well.
 * The per-page header lets the firmware detect a page loaded at the wrong place.
 */
    .section .ddr.big, "aw"
    .balign 4096
    .globl big_pattern
    .globl big_pattern_end
big_pattern:
    .set page, 0
    .rept 2048
    .4byte big_pattern + page * 4096
    .4byte page
    .fill 1022, 4, 0xB16B0000 | page
    .set page, page + 1
    .endr
big_pattern_end:
