/*
 * detachable - rpmsg echo that survives a detach and can be (re-)attached to.
 *
 * Resource table and channels: as rpmsg-echo (vdev + trace; rpmsg-raw, rpmsg-tty,
 * rpmsg-openamp-demo-channel), plus a heartbeat.
 *
 * Detach (the STM32MP "detach" mailbox channel): on control word DETACH the SDK stops using the
 * vrings, acknowledges with CTRL_TX = 1 and traces "detached, still running". The firmware keeps
 * running; `detachable_heartbeat` (a symbol in SRAM) counts 100 ms ticks whether attached or not.
 * When the host attaches again it has restored the pristine table (status 0) and then sets
 * DRIVER_OK on freshly allocated vrings: the SDK picks them up and announces the channels again.
 *
 * Started by a boot loader (the host attaches without loading): the firmware publishes its table
 * in RSC_TABLE_DA/SIZE at start, which is all the host needs to find the live table.
 */
#include "echo.h"
#include "vsoc.h"

#define HEARTBEAT_US 100000u

RSC_TABLE_SECTION struct echo_rsc_table resource_table = ECHO_RSC_TABLE_INIT;

volatile uint32_t detachable_heartbeat;

void vsoc_timer_tick(void)
{
    detachable_heartbeat++;
}

static void on_ctrl(uint32_t word)
{
    if (word == MBOX_CTRL_SHUTDOWN)
        trace_printf("shutdown requested after %u heartbeats", detachable_heartbeat);
    else
        trace_printf("control word %u ignored", word);
}

int main(void)
{
    vsoc_publish_rsc_table(&resource_table, sizeof(resource_table));
    trace_printf("detachable on %s core %u", VSOC_ARCH_NAME, vsoc_core_id());
    rpmsg_init(&resource_table.vdev.vdev);
    rpmsg_enable_detach(1);
    rpmsg_set_ctrl_hook(on_ctrl);
    echo_create_channels(0);
    vsoc_timer_start(HEARTBEAT_US);
    vsoc_irq_enable();
    rpmsg_run();
}
