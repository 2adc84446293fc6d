/*
 * trace.c - line-oriented trace ring in SRAM, mirrored to the console.
 *
 * Layout invariant (what the host relies on): vsoc_trace_buf holds whole lines followed by a
 * NUL. The terminator after a new line is written before the line itself, so a host reading at
 * any moment always finds a NUL inside the buffer (it may see a line that is being written).
 * When a line does not fit in the space left, writing restarts at offset 0: the host then sees
 * only the lines written since the wrap, which is how a kernel-style reader (strnlen from the
 * start) can follow a ring without any read pointer.
 */
#include "trace.h"
#include "vsoc.h"

/* Put the buffer in its own section so the linker script can place it (SRAM) and so the host
 * can find it by symbol when debugging. Zero-initialised: an empty string at boot. */
char vsoc_trace_buf[VSOC_TRACE_SIZE] __attribute__((section(".trace"), aligned(4)));

static size_t trace_pos;           /* offset of the NUL terminator */
static int console_echo = 1;

#define TRACE_LINE_MAX 160u

/* A board with a console of its own (a UART: firmware/examples/stm32mp157-echo) builds this
 * file with -DSDK_BOARD_CONSOLE and supplies console_putc itself. */
#ifndef SDK_BOARD_CONSOLE
void console_putc(char c)
{
    mmio_write(VSOC_CONSOLE_BASE, CONSOLE_TX, (uint8_t)c);
}
#endif

void console_puts(const char *s)
{
    while (*s)
        console_putc(*s++);
}

void trace_set_console_echo(int on)
{
    console_echo = on;
}

/* Append `n` bytes (a complete line, '\n' included) keeping the NUL invariant. */
static void trace_append(const char *line, size_t n)
{
    if (n + 1 > VSOC_TRACE_SIZE)
        n = VSOC_TRACE_SIZE - 1;
    if (trace_pos + n + 1 > VSOC_TRACE_SIZE) {
        trace_pos = 0;   /* wrap: the older lines are dropped */
    }
    vsoc_trace_buf[trace_pos + n] = '\0';
    vsoc_mb();
    for (size_t i = 0; i < n; i++)
        vsoc_trace_buf[trace_pos + i] = line[i];
    trace_pos += n;
}

static void trace_emit(char *line, size_t n)
{
    /* Every trace entry is one line: make sure it ends with exactly one newline. */
    if (n == 0 || line[n - 1] != '\n')
        line[n++] = '\n';
    /* Interrupt handlers trace too: make the append atomic with respect to them. */
#if defined(__arm__)
    uint32_t primask;
    __asm__ volatile("mrs %0, primask" : "=r"(primask));
    vsoc_irq_disable();
    trace_append(line, n);
    if (!primask)
        vsoc_irq_enable();
#else
    uint32_t mstatus;
    __asm__ volatile("csrrci %0, mstatus, 8" : "=r"(mstatus) :: "memory");
    trace_append(line, n);
    if (mstatus & 8u)
        vsoc_irq_enable();
#endif
    if (console_echo)
        for (size_t i = 0; i < n; i++)
            console_putc(line[i]);
}

int trace_vprintf(const char *fmt, va_list ap)
{
    char line[TRACE_LINE_MAX + 1];
    int len = vsnprintf_(line, TRACE_LINE_MAX, fmt, ap);
    size_t n = (size_t)len < TRACE_LINE_MAX ? (size_t)len : TRACE_LINE_MAX - 1;
    trace_emit(line, n);
    return len;
}

int trace_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = trace_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

void trace_puts(const char *s)
{
    trace_printf("%s", s);
}
