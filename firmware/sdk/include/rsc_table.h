/*
 * rsc_table.h - the resource table as the firmware declares it (spec §5.1).
 *
 * The host finds the table through the ELF section ".resource_table", copies it, fills in what it
 * allocates (notify ids, vring addresses, virtio status) and writes it back into this very memory
 * before (boot) or while (attach) the core runs. All structures are packed and in CPU byte order,
 * exactly like the kernel's include/linux/remoteproc.h layouts (written from the spec, not copied).
 *
 * Firmware must treat every field the host owns as volatile and must never write into the table
 * itself: on attach the host keeps a pristine copy of the live table and restores it on detach.
 */
#ifndef RSC_TABLE_H
#define RSC_TABLE_H

#include <stdint.h>

#define RSC_CARVEOUT   0u
#define RSC_DEVMEM     1u
#define RSC_TRACE      2u
#define RSC_VDEV       3u

#define FW_RSC_ADDR_ANY 0xFFFFFFFFu

#define VIRTIO_ID_RPMSG        7u
#define VIRTIO_RPMSG_F_NS      0u   /* feature bit: the remote announces its channels */

/* virtio status bits the host writes into fw_rsc_vdev.status */
#define VIRTIO_STATUS_ACKNOWLEDGE 0x01u
#define VIRTIO_STATUS_DRIVER      0x02u
#define VIRTIO_STATUS_DRIVER_OK   0x04u
#define VIRTIO_STATUS_FEATURES_OK 0x08u
#define VIRTIO_STATUS_FAILED      0x80u

#define RSC_PACKED __attribute__((packed))

struct fw_rsc_hdr {
    uint32_t type;
} RSC_PACKED;

/* table header; `offset[]` follows, one per entry */
struct fw_resource_table {
    uint32_t ver;          /* always 1 */
    uint32_t num;          /* number of entries */
    uint32_t reserved[2];  /* must be 0 */
} RSC_PACKED;

struct fw_rsc_carveout {   /* preceded by fw_rsc_hdr{RSC_CARVEOUT}; 52 bytes */
    uint32_t da;
    uint32_t pa;
    uint32_t len;
    uint32_t flags;
    uint32_t reserved;
    char name[32];
} RSC_PACKED;

struct fw_rsc_trace {      /* preceded by fw_rsc_hdr{RSC_TRACE}; 44 bytes */
    uint32_t da;
    uint32_t len;
    uint32_t reserved;
    char name[32];
} RSC_PACKED;

struct fw_rsc_vdev_vring { /* 20 bytes */
    uint32_t da;           /* FW_RSC_ADDR_ANY: the host allocates and writes the address back */
    uint32_t align;
    uint32_t num;          /* power of two */
    uint32_t notifyid;     /* written by the host */
    uint32_t pa;           /* unused by the host */
} RSC_PACKED;

struct fw_rsc_vdev {       /* preceded by fw_rsc_hdr{RSC_VDEV}; 24 bytes + vrings + config */
    uint32_t id;
    uint32_t notifyid;
    uint32_t dfeatures;
    uint32_t gfeatures;    /* written by the host */
    uint32_t config_len;
    uint8_t status;        /* written by the host */
    uint8_t num_of_vrings;
    uint8_t reserved[2];
    /* struct fw_rsc_vdev_vring vring[num_of_vrings]; then config_len bytes */
} RSC_PACKED;

/* ---- ready-made entries for the examples -------------------------------------------------- */

struct rsc_trace_entry {
    struct fw_rsc_hdr hdr;
    struct fw_rsc_trace trace;
} RSC_PACKED;

struct rsc_rpmsg_vdev_entry {
    struct fw_rsc_hdr hdr;
    struct fw_rsc_vdev vdev;
    struct fw_rsc_vdev_vring vring[2];  /* [0] host RX (we send), [1] host TX (we receive) */
} RSC_PACKED;

struct rsc_carveout_entry {
    struct fw_rsc_hdr hdr;
    struct fw_rsc_carveout carveout;
} RSC_PACKED;

/* Puts the table into the section the host looks for; `used` keeps it alive under -gc-sections.
 * Declare the table object without `const`: the host writes into it while the core runs, so
 * the compiler must not fold its fields (the SDK reads them through volatile pointers). */
#define RSC_TABLE_SECTION __attribute__((section(".resource_table"), used, aligned(8)))

#define RSC_TRACE_ENTRY(buf, size, nm) \
    { .hdr = { RSC_TRACE }, .trace = { (uint32_t)(uintptr_t)(buf), (size), 0, nm } }

/* An rpmsg vdev with two vrings the host allocates (da = ANY). */
#define RSC_RPMSG_VDEV_ENTRY(vring_num, vring_align)                                        \
    { .hdr = { RSC_VDEV },                                                                  \
      .vdev = { VIRTIO_ID_RPMSG, FW_RSC_ADDR_ANY, 1u << VIRTIO_RPMSG_F_NS, 0, 0, 0, 2, {0, 0} }, \
      .vring = { { FW_RSC_ADDR_ANY, (vring_align), (vring_num), FW_RSC_ADDR_ANY, 0 },        \
                 { FW_RSC_ADDR_ANY, (vring_align), (vring_num), FW_RSC_ADDR_ANY, 0 } } }

#endif /* RSC_TABLE_H */
