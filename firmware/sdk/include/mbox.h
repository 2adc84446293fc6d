/*
 * mbox.h - the interface between the rpmsg stack and the inter-processor mailbox.
 *
 * This is the only hardware the rpmsg stack touches besides shared memory. Porting the stack to
 * a real SoC means writing another implementation of these functions (an STM32 IPCC, an i.MX MU,
 * a Xilinx IPI...) and calling the two rpmsg_mbox_* entry points from its interrupt handler.
 * The virtual SoC's implementation is src/mbox_vsoc.c.
 */
#ifndef MBOX_H
#define MBOX_H

#include <stdint.h>

void mbox_init(void);                   /* enable the doorbell + control interrupts */
void mbox_kick(uint32_t notifyid);      /* ring the host for a vring's notify id */
void mbox_send_ctrl(uint32_t word);     /* a control word to the host (DETACH ack) */

/* Called from the mailbox interrupt handler (interrupt context): */
void rpmsg_mbox_kicked(uint32_t notifyid);   /* the host kicked a vring */
void rpmsg_mbox_ctrl(uint32_t word);         /* a control word arrived */

#endif /* MBOX_H */
