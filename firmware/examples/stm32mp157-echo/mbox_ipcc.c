/*
 * mbox_ipcc.c - the SDK's mailbox interface (sdk/include/mbox.h) over the STM32MP157 IPCC, with
 * the channel use of Linux's stm32_rproc: channel 0 = vq0, 1 = vq1 (kicks both ways, notify id
 * == channel), 2 = shutdown, 3 = detach. The M4 is processor 2: it reads the host's flags in
 * C1TOC2SR, acknowledges them through C2SCR CHnC, and rings the host with C2SCR CHnS.
 */
#include "mbox.h"
#include "soc.h"
#include "vsoc.h"

#define CH_VQ0      0u
#define CH_VQ1      1u
#define CH_SHUTDOWN 2u
#define CH_DETACH   3u
#define CH_USED     4u

volatile uint32_t ipcc_rx_count[CH_USED];

void mbox_init(void)
{
    /* Unmask "occupied" for the four channels we serve; "free" stays masked (we poll it). */
    uint32_t mr = IPCC_C2MR;
    for (uint32_t ch = 0; ch < CH_USED; ch++)
        mr &= ~IPCC_MR_OCCUPIED_MASK(ch);
    IPCC_C2MR = mr;
    IPCC_C2CR = IPCC_CR_RXOIE;
    nvic_enable(IPCC_RX_IRQn);
}

void mbox_kick(uint32_t notifyid)
{
    if (notifyid > CH_VQ1)
        return;
    vsoc_mb();   /* the used ring must be visible before the host looks at it */
    /* The previous kick on this channel must have been taken (the host frees it at once). */
    while (IPCC_C2TOC1SR & (1u << notifyid))
        ;
    IPCC_C2SCR = IPCC_SCR_SET(notifyid);
}

/* A shutdown or detach request is acknowledged by freeing its channel (the host's mailbox
 * waits for "TX free"), once it has been acted on in thread context: the interrupt handler
 * only masks the channel so that the level-triggered line drops meanwhile. */
static void ack_channel(uint32_t ch)
{
    vsoc_mb();
    IPCC_C2SCR = IPCC_SCR_CLEAR(ch);
    IPCC_C2MR &= ~IPCC_MR_OCCUPIED_MASK(ch);
}

void mbox_send_ctrl(uint32_t word)
{
    if (word == MBOX_CTRL_DETACH_ACK)
        ack_channel(CH_DETACH);   /* the rpmsg stack has dropped the vrings */
}

void mbox_ack_shutdown(void)
{
    ack_channel(CH_SHUTDOWN);
}

/* RX-occupied interrupt: the host rang one or more channels. Take each, then free it. */
void ipcc_rx_irq(void)
{
    uint32_t pending = IPCC_C1TOC2SR & ~IPCC_C2MR & ((1u << CH_USED) - 1u);
    for (uint32_t ch = 0; ch < CH_USED; ch++) {
        if (!(pending & (1u << ch)))
            continue;
        ipcc_rx_count[ch]++;
        if (ch == CH_SHUTDOWN || ch == CH_DETACH) {
            IPCC_C2MR |= IPCC_MR_OCCUPIED_MASK(ch);   /* freed by the acknowledgement */
            rpmsg_mbox_ctrl(ch == CH_SHUTDOWN ? MBOX_CTRL_SHUTDOWN : MBOX_CTRL_DETACH);
            continue;
        }
        rpmsg_mbox_kicked(ch);
        IPCC_C2SCR = IPCC_SCR_CLEAR(ch);
    }
}
