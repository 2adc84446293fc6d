/*
 * rpmsg.h - a small remote-side (virtio device role) rpmsg stack.
 *
 * One rpmsg virtio device per firmware, described by an RSC_VDEV entry with two vrings:
 *   vring[0] is the host's RX queue: the host posts empty 512-byte buffers, we fill them (send);
 *   vring[1] is the host's TX queue: the host posts full buffers, we consume them (receive).
 * The host allocates both vrings and the buffers, writes the vring addresses into the table and
 * sets DRIVER_OK in the vdev status; only then may the firmware look at the vrings.
 *
 * Threading model: the mailbox interrupt only records "kicked" / a control word; all vring work
 * happens in rpmsg_poll(), called from the main loop, so endpoint callbacks run in thread
 * context and may call rpmsg_send().
 */
#ifndef RPMSG_H
#define RPMSG_H

#include <stddef.h>
#include <stdint.h>
#include "rsc_table.h"

#define RPMSG_ADDR_ANY          0xFFFFFFFFu
#define RPMSG_NS_ADDR           53u
#define RPMSG_RESERVED_ADDRESSES 1024u
#define RPMSG_NAME_SIZE         32u
#define RPMSG_BUF_SIZE          512u          /* what Linux allocates per buffer */
#define RPMSG_HDR_SIZE          16u
#define RPMSG_MTU               (RPMSG_BUF_SIZE - RPMSG_HDR_SIZE)   /* 496 */

#define RPMSG_NS_CREATE         0u
#define RPMSG_NS_DESTROY        1u

/* error codes (negative returns) */
#define RPMSG_ERR_NOT_READY     (-1)   /* no DRIVER_OK yet, or detached */
#define RPMSG_ERR_NO_BUFFER     (-2)   /* vring0 has no free buffer (try variants only) */
#define RPMSG_ERR_TOO_BIG       (-3)   /* payload > MTU (or > the host's buffer) */
#define RPMSG_ERR_ADDR          (-4)   /* address in use / invalid */

struct rpmsg_endpoint;

/* Called from rpmsg_poll() for each message whose dst is ept->addr. `data` points into the
 * host's buffer and is valid only during the call. */
typedef void (*rpmsg_ept_cb)(struct rpmsg_endpoint *ept, const void *data, size_t len,
                             uint32_t src, void *priv);

struct rpmsg_endpoint {
    char name[RPMSG_NAME_SIZE];   /* announced through the name service if non-empty */
    uint32_t addr;
    rpmsg_ept_cb cb;
    void *priv;
    struct rpmsg_endpoint *next;
};

enum rpmsg_link_state {
    RPMSG_LINK_DOWN = 0,   /* waiting for DRIVER_OK */
    RPMSG_LINK_UP,         /* vrings in use */
};

/* Set up the stack for the vdev entry of the resource table. Does not wait. */
void rpmsg_init(volatile struct fw_rsc_vdev *vdev);

/* Allow the host to detach (mailbox control word DETACH): the stack stops using the vrings,
 * acknowledges and waits for DRIVER_OK again. Without this, DETACH is traced and ignored. */
void rpmsg_enable_detach(int on);

/* Hook for control words the stack does not handle itself (SHUTDOWN, unknown words). */
void rpmsg_set_ctrl_hook(void (*hook)(uint32_t word));

/* Register an endpoint. addr = RPMSG_ADDR_ANY picks a free address >= 1024. A non-empty name is
 * announced (NS CREATE) now if the link is up, and again every time the link comes up. */
int rpmsg_create_ept(struct rpmsg_endpoint *ept, const char *name, uint32_t addr,
                     rpmsg_ept_cb cb, void *priv);
/* Unregister (NS DESTROY if it was announced and the link is up). */
void rpmsg_destroy_ept(struct rpmsg_endpoint *ept);

/* Send from ept->addr to dst. rpmsg_send waits (sleeping) while vring0 has no free buffer;
 * rpmsg_trysend returns RPMSG_ERR_NO_BUFFER instead. Both return the payload length. */
int rpmsg_send(struct rpmsg_endpoint *ept, uint32_t dst, const void *data, size_t len);
int rpmsg_trysend(struct rpmsg_endpoint *ept, uint32_t dst, const void *data, size_t len);

/* Do all pending work: notice DRIVER_OK / reset / DETACH, deliver received messages, return
 * consumed buffers and kick the host. Never blocks. */
void rpmsg_poll(void);

/* True if rpmsg_poll() has something to do. Use between vsoc_sleep_prepare() and vsoc_sleep(). */
int rpmsg_work_pending(void);

enum rpmsg_link_state rpmsg_link_state(void);

/* The usual main loop: sleep until an interrupt, poll, forever. */
void rpmsg_run(void) __attribute__((noreturn));

#endif /* RPMSG_H */
