/*
 * trace.h - the remoteproc trace buffer and the console.
 *
 * The host reads the trace buffer the way the kernel's debugfs traceN file does: from the start
 * of the buffer up to the first NUL. The SDK therefore appends whole lines and keeps a NUL after
 * the last one; when a line would not fit, it starts again at the beginning (the older text is
 * dropped, and what the host sees is always whole lines since the last wrap).
 */
#ifndef TRACE_H
#define TRACE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Size of the trace buffer the SDK provides (in .trace, SRAM). An application may reference
 * `vsoc_trace_buf` / VSOC_TRACE_SIZE in its resource table's trace entry. */
#ifndef VSOC_TRACE_SIZE
#define VSOC_TRACE_SIZE 4096u
#endif
extern char vsoc_trace_buf[VSOC_TRACE_SIZE];

/* printf subset: %% %c %s %d %i %u %x %X %p, flags '-' '0', a width, and 'l' (ignored: 32-bit). */
int trace_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int trace_vprintf(const char *fmt, va_list ap);
void trace_puts(const char *line);           /* one line; a '\n' is added if missing */

/* Also copy every trace line to the console (on by default). */
void trace_set_console_echo(int on);

void console_putc(char c);
void console_puts(const char *s);

int vsnprintf_(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf_(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif /* TRACE_H */
