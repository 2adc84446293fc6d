/*
 * rpmsg.c - remote-side rpmsg over two legacy split virtqueues (spec §9), device role.
 *
 * Everything here is our own reading of the virtio split-ring layout and of what the Linux
 * rpmsg driver expects from the other side:
 *   - the host posts RX buffers in vring0 and kicks vring0's notify id; we take them from the
 *     avail ring to send, fill them, put them in the used ring and kick vring0's notify id;
 *   - the host posts messages in vring1 and kicks vring1's notify id; we read them from the
 *     avail ring, return them through the used ring and kick vring1's notify id (a blocked
 *     host sender waits for that kick);
 *   - name-service announcements go to address 53 from the endpoint's own address.
 */
#include <stdint.h>
#include "fwlib.h"
#include "mbox.h"
#include "rpmsg.h"
#include "trace.h"
#include "vsoc.h"

/* ---- split virtqueue layout (legacy, CPU byte order) --------------------------------------- */

struct vring_desc {
    uint64_t addr;     /* physical address == our device address (pa == da in shared DDR) */
    uint32_t len;
    uint16_t flags;
    uint16_t next;
} __attribute__((packed));

struct vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];
} __attribute__((packed));

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
} __attribute__((packed));

struct vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[];
} __attribute__((packed));

struct vq {
    volatile struct vring_desc *desc;
    volatile struct vring_avail *avail;
    volatile struct vring_used *used;
    uint32_t num;
    uint32_t notifyid;
    uint16_t last_avail;   /* next avail entry we have not consumed yet */
    int kick_due;          /* used ring advanced since the last kick */
};

/* ---- device state ------------------------------------------------------------------------ */

static struct {
    volatile struct fw_rsc_vdev *vdev;
    volatile struct fw_rsc_vdev_vring *vring;
    enum rpmsg_link_state state;
    struct vq vq[2];                 /* [0] = host RX (we send), [1] = host TX (we receive) */
    struct rpmsg_endpoint *epts;
    uint32_t next_addr;
    int detach_enabled;
    int in_poll;                     /* defer kicks to the end of rpmsg_poll() */
    void (*ctrl_hook)(uint32_t word);
    /* written by the interrupt handler, read by rpmsg_poll() */
    volatile uint32_t kicked;
    volatile uint32_t ctrl_word;
} dev;

static int is_pow2(uint32_t x) { return x && !(x & (x - 1)); }

static uint32_t align_up(uint32_t x, uint32_t a) { return (x + a - 1) & ~(a - 1); }

/* Lay the three parts of a split ring out from its base address, as vring_init() does. */
static int vq_setup(struct vq *q, const volatile struct fw_rsc_vdev_vring *r)
{
    uint32_t base = r->da, num = r->num, align = r->align;
    if (base == 0 || base == FW_RSC_ADDR_ANY || !is_pow2(num) || !is_pow2(align))
        return -1;
    q->desc = (volatile struct vring_desc *)(uintptr_t)base;
    q->avail = (volatile struct vring_avail *)(uintptr_t)(base + 16u * num);
    q->used = (volatile struct vring_used *)(uintptr_t)
        align_up(base + 16u * num + 2u * (3u + num), align);
    q->num = num;
    q->notifyid = r->notifyid;
    /* The host zeroed the ring when it created the queue: both indexes start at 0. */
    q->last_avail = 0;
    q->kick_due = 0;
    return 0;
}

static int vq_has_avail(const struct vq *q)
{
    return q->avail && q->avail->idx != q->last_avail;
}

/* Take the next available buffer; returns the descriptor index or -1. */
static int vq_get_avail(struct vq *q, void **buf, uint32_t *len)
{
    if (!vq_has_avail(q))
        return -1;
    vsoc_mb();   /* read the ring entry only after seeing the index that covers it */
    uint16_t head = q->avail->ring[q->last_avail & (q->num - 1)];
    if (head >= q->num)
        return -1;   /* corrupt ring: refuse rather than follow a wild pointer */
    q->last_avail++;
    *buf = (void *)(uintptr_t)(uint32_t)q->desc[head].addr;
    *len = q->desc[head].len;
    return head;
}

/* Hand a buffer back to the host with `len` bytes written (or consumed). */
static void vq_put_used(struct vq *q, uint16_t head, uint32_t len)
{
    uint16_t idx = q->used->idx;
    volatile struct vring_used_elem *e = &q->used->ring[idx & (q->num - 1)];
    e->id = head;
    e->len = len;
    vsoc_mb();   /* the element must be visible before the index that publishes it */
    q->used->idx = (uint16_t)(idx + 1);
    q->kick_due = 1;
}

static void vq_kick(struct vq *q)
{
    if (!q->kick_due)
        return;
    q->kick_due = 0;
    /* Always kick, even if the host set VRING_AVAIL_F_NO_INTERRUPT: a spurious interrupt costs
     * the host nothing, a missing one leaves a blocked sender waiting for 15 s (spec §9.3). */
    mbox_kick(q->notifyid);
}

/* ---- interrupt side ----------------------------------------------------------------------- */

void rpmsg_mbox_kicked(uint32_t notifyid)
{
    (void)notifyid;   /* both queues are looked at on every poll */
    dev.kicked = 1;
}

void rpmsg_mbox_ctrl(uint32_t word)
{
    dev.ctrl_word = word;
}

/* ---- link management ---------------------------------------------------------------------- */

static int status_ok(void)
{
    return dev.vdev && (dev.vdev->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(dev.vdev->status & VIRTIO_STATUS_FAILED);
}

static int send_raw(uint32_t src, uint32_t dst, const void *data, size_t len, int wait);

static void announce(struct rpmsg_endpoint *ept, uint32_t flags)
{
    struct {
        char name[RPMSG_NAME_SIZE];
        uint32_t addr;
        uint32_t flags;
    } __attribute__((packed)) msg;

    memset(&msg, 0, sizeof(msg));
    memcpy(msg.name, ept->name, RPMSG_NAME_SIZE);
    msg.addr = ept->addr;
    msg.flags = flags;
    if (send_raw(ept->addr, RPMSG_NS_ADDR, &msg, sizeof(msg), 1) >= 0)
        trace_printf("rpmsg: %s channel %s addr 0x%x", flags == RPMSG_NS_CREATE ?
                     "announced" : "destroyed", ept->name, ept->addr);
}

static void link_up(void)
{
    const volatile struct fw_rsc_vdev_vring *r = dev.vring;
    vsoc_mb();   /* DRIVER_OK was seen: now the vring fields are final */
    if (vq_setup(&dev.vq[0], &r[0]) || vq_setup(&dev.vq[1], &r[1])) {
        trace_printf("rpmsg: bad vrings (da 0x%x/0x%x num %u/%u), staying down",
                     r[0].da, r[1].da, r[0].num, r[1].num);
        dev.vq[0].avail = dev.vq[1].avail = 0;
        return;
    }
    dev.state = RPMSG_LINK_UP;
    trace_printf("rpmsg: link up, vring0 da 0x%x id %u, vring1 da 0x%x id %u, num %u",
                 r[0].da, r[0].notifyid, r[1].da, r[1].notifyid, r[0].num);
    if (dev.vdev->gfeatures & (1u << VIRTIO_RPMSG_F_NS))
        for (struct rpmsg_endpoint *e = dev.epts; e; e = e->next)
            if (e->name[0])
                announce(e, RPMSG_NS_CREATE);
}

static void link_down(const char *why)
{
    if (dev.state == RPMSG_LINK_DOWN)
        return;
    /* Forget the queues: the host freed (or will free) them. Nothing is returned or kicked. */
    dev.state = RPMSG_LINK_DOWN;
    memset(dev.vq, 0, sizeof(dev.vq));
    trace_printf("rpmsg: link down (%s), waiting for DRIVER_OK", why);
}

static void handle_ctrl(uint32_t word)
{
    if (word == MBOX_CTRL_DETACH) {
        if (!dev.detach_enabled) {
            trace_printf("rpmsg: detach requested but not supported, ignored");
            return;
        }
        link_down("detach");
        mbox_send_ctrl(MBOX_CTRL_DETACH_ACK);
        trace_printf("detached, still running");
        return;
    }
    if (dev.ctrl_hook)
        dev.ctrl_hook(word);
    else
        trace_printf("rpmsg: control word %u ignored", word);
}

/* ---- receive ----------------------------------------------------------------------------- */

struct rpmsg_hdr {
    uint32_t src;
    uint32_t dst;
    uint32_t reserved;
    uint16_t len;
    uint16_t flags;
    uint8_t data[];
} __attribute__((packed));

static void deliver(const struct rpmsg_hdr *h, uint32_t buflen)
{
    if (buflen < RPMSG_HDR_SIZE || h->len > buflen - RPMSG_HDR_SIZE) {
        trace_printf("rpmsg: malformed message (len %u in a %u-byte buffer)", h->len, buflen);
        return;
    }
    for (struct rpmsg_endpoint *e = dev.epts; e; e = e->next) {
        if (e->addr == h->dst) {
            if (e->cb)
                e->cb(e, h->data, h->len, h->src, e->priv);
            return;
        }
    }
    if (h->dst != RPMSG_NS_ADDR)   /* the host announcing its own channels: nothing to do */
        trace_printf("rpmsg: message from 0x%x for unknown address 0x%x dropped", h->src, h->dst);
}

static void receive_all(void)
{
    struct vq *q = &dev.vq[1];
    void *buf;
    uint32_t len;
    int head;
    while (dev.state == RPMSG_LINK_UP && (head = vq_get_avail(q, &buf, &len)) >= 0) {
        deliver((const struct rpmsg_hdr *)buf, len);
        /* A callback may have seen a DETACH/reset through rpmsg_send's wait: then the queue is
         * gone and the buffer must not be touched any more. */
        if (dev.state != RPMSG_LINK_UP)
            return;
        vq_put_used(q, (uint16_t)head, len);
    }
}

/* ---- public API ------------------------------------------------------------------------ */

void rpmsg_init(volatile struct fw_rsc_vdev *vdev)
{
    memset((void *)&dev, 0, sizeof(dev));
    dev.vdev = vdev;
    dev.vring = (volatile struct fw_rsc_vdev_vring *)(vdev + 1);
    dev.next_addr = RPMSG_RESERVED_ADDRESSES;
    dev.state = RPMSG_LINK_DOWN;
    mbox_init();
}

void rpmsg_enable_detach(int on) { dev.detach_enabled = on; }

void rpmsg_set_ctrl_hook(void (*hook)(uint32_t word)) { dev.ctrl_hook = hook; }

enum rpmsg_link_state rpmsg_link_state(void) { return dev.state; }

static struct rpmsg_endpoint *find_ept(uint32_t addr)
{
    for (struct rpmsg_endpoint *e = dev.epts; e; e = e->next)
        if (e->addr == addr)
            return e;
    return 0;
}

int rpmsg_create_ept(struct rpmsg_endpoint *ept, const char *name, uint32_t addr,
                     rpmsg_ept_cb cb, void *priv)
{
    if (addr == RPMSG_ADDR_ANY) {
        while (find_ept(dev.next_addr))
            dev.next_addr++;
        addr = dev.next_addr++;
    } else if (addr == RPMSG_NS_ADDR || find_ept(addr)) {
        return RPMSG_ERR_ADDR;
    }
    memset(ept, 0, sizeof(*ept));
    if (name)
        for (size_t i = 0; i < RPMSG_NAME_SIZE - 1 && name[i]; i++)
            ept->name[i] = name[i];
    ept->addr = addr;
    ept->cb = cb;
    ept->priv = priv;
    /* Append: channels are announced in the order they were created. */
    struct rpmsg_endpoint **p = &dev.epts;
    while (*p)
        p = &(*p)->next;
    *p = ept;
    if (ept->name[0] && dev.state == RPMSG_LINK_UP &&
        (dev.vdev->gfeatures & (1u << VIRTIO_RPMSG_F_NS)))
        announce(ept, RPMSG_NS_CREATE);
    return (int)addr;
}

void rpmsg_destroy_ept(struct rpmsg_endpoint *ept)
{
    if (ept->name[0] && dev.state == RPMSG_LINK_UP &&
        (dev.vdev->gfeatures & (1u << VIRTIO_RPMSG_F_NS)))
        announce(ept, RPMSG_NS_DESTROY);
    for (struct rpmsg_endpoint **p = &dev.epts; *p; p = &(*p)->next) {
        if (*p == ept) {
            *p = ept->next;
            break;
        }
    }
}

/* Read and clear the control word atomically with respect to the mailbox interrupt. */
static uint32_t take_ctrl_word(void)
{
    vsoc_irq_disable();
    uint32_t w = dev.ctrl_word;
    dev.ctrl_word = 0;
    vsoc_irq_enable();
    return w;
}

static int send_raw(uint32_t src, uint32_t dst, const void *data, size_t len, int wait)
{
    void *buf;
    uint32_t buflen;
    int head;

    if (len > RPMSG_MTU)
        return RPMSG_ERR_TOO_BIG;
    for (;;) {
        if (dev.state != RPMSG_LINK_UP)
            return RPMSG_ERR_NOT_READY;
        head = vq_get_avail(&dev.vq[0], &buf, &buflen);
        if (head >= 0)
            break;
        if (!wait)
            return RPMSG_ERR_NO_BUFFER;
        /* Sleep until the host returns RX buffers (it kicks vring0 after re-posting them).
         * Flush the kicks batched by rpmsg_poll() first: the host only re-posts buffers it
         * knows we used. A DETACH or a virtio reset while we wait ends the wait. */
        vq_kick(&dev.vq[0]);
        vq_kick(&dev.vq[1]);
        vsoc_sleep_prepare();
        if (!dev.kicked && !dev.ctrl_word && !vq_has_avail(&dev.vq[0]))
            vsoc_sleep();
        dev.kicked = 0;
        uint32_t w = take_ctrl_word();
        if (w)
            handle_ctrl(w);
        if (!status_ok())
            link_down("virtio reset");
    }
    if (buflen < RPMSG_HDR_SIZE + len) {
        /* The host posted a buffer too small for this message: give it back empty. */
        vq_put_used(&dev.vq[0], (uint16_t)head, 0);
        vq_kick(&dev.vq[0]);
        return RPMSG_ERR_TOO_BIG;
    }
    struct rpmsg_hdr *h = buf;
    h->src = src;
    h->dst = dst;
    h->reserved = 0;
    h->len = (uint16_t)len;
    h->flags = 0;
    memcpy(h->data, data, len);
    vq_put_used(&dev.vq[0], (uint16_t)head, (uint32_t)(RPMSG_HDR_SIZE + len));
    if (!dev.in_poll)
        vq_kick(&dev.vq[0]);   /* inside rpmsg_poll() the kick is batched at the end */
    return (int)len;
}

int rpmsg_send(struct rpmsg_endpoint *ept, uint32_t dst, const void *data, size_t len)
{
    if (dst == RPMSG_ADDR_ANY)
        return RPMSG_ERR_ADDR;
    return send_raw(ept->addr, dst, data, len, 1);
}

int rpmsg_trysend(struct rpmsg_endpoint *ept, uint32_t dst, const void *data, size_t len)
{
    if (dst == RPMSG_ADDR_ANY)
        return RPMSG_ERR_ADDR;
    return send_raw(ept->addr, dst, data, len, 0);
}

int rpmsg_work_pending(void)
{
    if (dev.kicked || dev.ctrl_word)
        return 1;
    /* A status change raises no interrupt by itself; the host kicks right after DRIVER_OK,
     * but checking here as well costs one load. */
    if (dev.state == RPMSG_LINK_DOWN)
        return status_ok();
    return !status_ok() || vq_has_avail(&dev.vq[1]);
}

void rpmsg_poll(void)
{
    dev.kicked = 0;
    uint32_t w = take_ctrl_word();

    if (w)
        handle_ctrl(w);
    if (dev.state == RPMSG_LINK_UP && !status_ok())
        link_down("virtio reset");
    if (dev.state == RPMSG_LINK_DOWN && status_ok())
        link_up();
    if (dev.state != RPMSG_LINK_UP)
        return;

    dev.in_poll = 1;
    receive_all();
    dev.in_poll = 0;
    if (dev.state == RPMSG_LINK_UP) {
        vq_kick(&dev.vq[0]);   /* replies sent by the callbacks */
        vq_kick(&dev.vq[1]);   /* buffers returned to the host's TX queue */
    }
}

void rpmsg_run(void)
{
    for (;;) {
        vsoc_sleep_prepare();
        if (!rpmsg_work_pending())
            vsoc_sleep();
        rpmsg_poll();
    }
}
