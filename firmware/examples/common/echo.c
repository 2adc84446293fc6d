/*
 * echo.c - the echo service and the "bench" command shared by the rpmsg examples.
 */
#include "echo.h"
#include "fwlib.h"
#include "vsoc.h"

#define ECHO_CHANNELS 3

static struct rpmsg_endpoint echo_epts[ECHO_CHANNELS];
static const char *const echo_names[ECHO_CHANNELS] = {
    "rpmsg-raw",                  /* bound by rpmsg_char on the host: /dev/rpmsgN */
    "rpmsg-tty",                  /* bound by rpmsg_tty: /dev/ttyRPMSGN */
    "rpmsg-openamp-demo-channel", /* the name OpenAMP's echo demos use */
};

static int starts_with(const char *msg, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && !memcmp(msg, word, n);
}

size_t echo_parse_u32(const char *s, size_t len, uint32_t *out)
{
    size_t i = 0;
    uint32_t v = 0;
    while (i < len && s[i] == ' ')
        i++;
    size_t start = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        v = v * 10u + (uint32_t)(s[i++] - '0');
    *out = v;
    return i == start ? 0 : i;
}

uint32_t echo_bench_loop(uint32_t n)
{
    uint32_t x = 0;
    if (!n)
        return 0;
#if defined(__arm__)
    __asm__ volatile(
        "1:\n\t"
        "add  %[x], %[x], %[n]\n\t"
        "eor  %[x], %[x], #0x5a\n\t"
        "subs %[n], %[n], #1\n\t"
        "bne  1b\n\t"
        : [x] "+r"(x), [n] "+r"(n)
        :
        : "cc");
#else
    __asm__ volatile(
        "1:\n\t"
        "add  %[x], %[x], %[n]\n\t"
        "xori %[x], %[x], 0x5a\n\t"
        "addi %[n], %[n], -1\n\t"
        "bnez %[n], 1b\n\t"
        : [x] "+r"(x), [n] "+r"(n));
#endif
    return x;
}

int echo_bench_command(struct rpmsg_endpoint *ept, const char *msg, size_t len, uint32_t src)
{
    uint32_t n;
    char reply[96];
    if (!starts_with(msg, len, "bench ") || !echo_parse_u32(msg + 6, len - 6, &n))
        return 0;
    uint64_t t0 = vsoc_now_us();
    uint32_t result = echo_bench_loop(n);
    uint32_t us = (uint32_t)(vsoc_now_us() - t0);
    /* insns = 4 per iteration; the host divides by us for emulated MIPS */
    int r = snprintf_(reply, sizeof(reply), "bench %u result 0x%08x us %u insns/iter 4", n,
                      result, us);
    rpmsg_send(ept, src, reply, (size_t)r);
    trace_printf("bench %u: %u us", n, us);
    return 1;
}

static echo_command_fn echo_commands;

void echo_cb(struct rpmsg_endpoint *ept, const void *data, size_t len, uint32_t src,
             void *priv)
{
    (void)priv;
    const char *msg = data;
    if (echo_bench_command(ept, msg, len, src))
        return;
    if (echo_commands && echo_commands(ept, msg, len, src))
        return;
    int r = rpmsg_send(ept, src, data, len);
    if (r < 0)
        trace_printf("echo: send to 0x%x failed (%d)", src, r);
}

void echo_create_channels(echo_command_fn commands)
{
    echo_commands = commands;
    for (unsigned i = 0; i < ECHO_CHANNELS; i++)
        rpmsg_create_ept(&echo_epts[i], echo_names[i], RPMSG_ADDR_ANY, echo_cb, 0);
}
