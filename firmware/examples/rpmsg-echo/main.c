/*
 * rpmsg-echo - announces three channels and echoes every message back to its sender.
 *
 * Resource table: an rpmsg vdev (id 7, VIRTIO_RPMSG_F_NS, two vrings of 16 allocated by the
 * host) and a trace buffer. Channels (addresses from 1024 up, in this order):
 *   "rpmsg-raw" (1024), "rpmsg-tty" (1025), "rpmsg-openamp-demo-channel" (1026).
 * A message "bench N" runs the benchmark loop N times instead (see common/echo.c).
 */
#include "echo.h"
#include "vsoc.h"

RSC_TABLE_SECTION struct echo_rsc_table resource_table = ECHO_RSC_TABLE_INIT;

int main(void)
{
    vsoc_publish_rsc_table(&resource_table, sizeof(resource_table));
    trace_printf("rpmsg-echo on %s core %u", VSOC_ARCH_NAME, vsoc_core_id());
    rpmsg_init(&resource_table.vdev.vdev);
    echo_create_channels(0);
    vsoc_irq_enable();
    rpmsg_run();
}
