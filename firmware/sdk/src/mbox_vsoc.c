/*
 * mbox_vsoc.c - the virtual SoC mailbox driver (docs/virtual-soc.md, "Mailbox").
 * Channel 0: a FIFO of notify ids in each direction. Channel 1: one control word.
 */
#include "mbox.h"
#include "vsoc.h"

void mbox_init(void)
{
    /* Drop anything left over from a previous run (a core restarted by a boot loader). */
    while (mmio_read(VSOC_MAILBOX_BASE, MBOX_RX_DATA) != MBOX_EMPTY)
        ;
    mmio_write(VSOC_MAILBOX_BASE, MBOX_IRQ_ENABLE, MBOX_IRQ_DATA | MBOX_IRQ_CTRL);
    vsoc_irq_line_enable(VSOC_IRQ_MAILBOX);
}

void mbox_kick(uint32_t notifyid)
{
    vsoc_mb();   /* the used-ring update must be visible before the host looks at it */
    mmio_write(VSOC_MAILBOX_BASE, MBOX_TX_DATA, notifyid);
}

void mbox_send_ctrl(uint32_t word)
{
    vsoc_mb();
    mmio_write(VSOC_MAILBOX_BASE, MBOX_CTRL_TX, word);
}

/* The line is level-triggered ("while RX_COUNT > 0", "while a control word is pending"):
 * drain both sources completely or the core would re-enter this handler forever. */
void vsoc_mailbox_irq(void)
{
    uint32_t id;
    while ((id = mmio_read(VSOC_MAILBOX_BASE, MBOX_RX_DATA)) != MBOX_EMPTY)
        rpmsg_mbox_kicked(id);
    if (mmio_read(VSOC_MAILBOX_BASE, MBOX_IRQ_STATUS) & MBOX_IRQ_CTRL) {
        uint32_t word = mmio_read(VSOC_MAILBOX_BASE, MBOX_CTRL_RX);
        if (word)
            rpmsg_mbox_ctrl(word);
    }
}
