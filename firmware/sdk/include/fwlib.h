/*
 * fwlib.h - the few C library functions the SDK provides itself (src/libc.c), so images do not
 * depend on newlib or picolibc being installed for the target.
 */
#ifndef FWLIB_H
#define FWLIB_H

#include <stddef.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);

#endif /* FWLIB_H */
