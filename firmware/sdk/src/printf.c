/*
 * printf.c - a small freestanding vsnprintf for trace lines and rpmsg replies.
 * No floating point and no 64-bit conversions: that keeps libgcc's division helpers out.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include "trace.h"

struct out {
    char *buf;
    size_t size;
    size_t len;   /* characters produced so far (may exceed size: snprintf semantics) */
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void put_padded(struct out *o, const char *s, size_t n, int width, int left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left)
        while (fill-- > 0)
            put(o, pad);
    while (n--)
        put(o, *s++);
    if (left)
        while (fill-- > 0)
            put(o, ' ');
}

int vsnprintf_(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };
    char tmp[12];

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        int left = 0;
        char pad = ' ';
        int width = 0;
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l' || *fmt == 'z')
            fmt++;   /* long and size_t are 32 bits on both targets */

        switch (*fmt) {
        case '\0':
            fmt--;
            break;
        case '%':
            put(&o, '%');
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            put_padded(&o, &c, 1, width, left, ' ');
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            size_t n = 0;
            if (!s)
                s = "(null)";
            while (s[n])
                n++;
            put_padded(&o, s, n, width, left, ' ');
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'p': {
            uint32_t v;
            int neg = 0;
            unsigned base = (*fmt == 'x' || *fmt == 'X' || *fmt == 'p') ? 16 : 10;
            const char *digits = *fmt == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            if (*fmt == 'p') {
                v = (uint32_t)(uintptr_t)va_arg(ap, void *);
                put(&o, '0');
                put(&o, 'x');
                if (!width) {
                    width = 8;
                    pad = '0';
                }
            } else if (*fmt == 'd' || *fmt == 'i') {
                int32_t s = va_arg(ap, int32_t);
                neg = s < 0;
                v = neg ? (uint32_t)0 - (uint32_t)s : (uint32_t)s;
            } else {
                v = va_arg(ap, uint32_t);
            }
            size_t n = 0;
            do {
                tmp[sizeof(tmp) - 1 - n++] = digits[v % base];
                v /= base;
            } while (v);
            if (neg) {
                if (pad == '0') {   /* sign goes before the zeros */
                    put(&o, '-');
                    width = width ? width - 1 : 0;
                } else {
                    tmp[sizeof(tmp) - 1 - n++] = '-';
                }
            }
            put_padded(&o, &tmp[sizeof(tmp) - n], n, width, left, left ? ' ' : pad);
            break;
        }
        default:   /* unknown conversion: print it verbatim so the mistake is visible */
            put(&o, '%');
            put(&o, *fmt);
            break;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int snprintf_(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf_(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
