/*
 * A board program using the character devices by path, with the kernel's uapi headers:
 * /dev/remoteprocN (start by write, shutdown-on-release by ioctl, stop by close) and
 * /dev/rpmsg_ctrlN (CREATE_EPT, then /dev/rpmsgM found below /sys/class/rpmsg/rpmsg_ctrlN,
 * echo, DESTROY_EPT). Exits non-zero at the first surprise.
 *
 *   cdev_ctrl PROCESSOR-NAME-TO-START
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/remoteproc_cdev.h>
#include <linux/rpmsg.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static void read_line(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	if (!f || !fgets(buf, size, f))
		FAIL("read %s: %s", path, strerror(errno));
	buf[strcspn(buf, "\n")] = 0;
	fclose(f);
}

/* wait (up to 30 s) until FILE reads WANT */
static void wait_for(const char *path, const char *want)
{
	char buf[64];
	for (int i = 0; i < 3000; i++) {
		read_line(path, buf, sizeof(buf));
		if (!strcmp(buf, want))
			return;
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	FAIL("%s is %s, not %s", path, buf, want);
}

int main(int argc, char **argv)
{
	const char *want = argc > 1 ? argv[1] : "rv";
	char path[1400], buf[1700], dev[256] = "";
	DIR *d = opendir("/sys/class/remoteproc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, "remoteproc", 10))
			continue;
		snprintf(path, sizeof(path), "/sys/class/remoteproc/%s/name", e->d_name);
		read_line(path, buf, sizeof(buf));
		if (!strcmp(buf, want))
			snprintf(dev, sizeof(dev), "%s", e->d_name);
	}
	if (d)
		closedir(d);
	if (!dev[0])
		FAIL("no processor named %s", want);

	char state[128];
	snprintf(state, sizeof(state), "/sys/class/remoteproc/%s/state", dev);
	snprintf(path, sizeof(path), "/dev/%s", dev);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		FAIL("open %s: %s", path, strerror(errno));
	if (write(fd, "start", 5) != 5)
		FAIL("write start: %s", strerror(errno));
	wait_for(state, "running");
	__s32 on = 1, got = 0;
	if (ioctl(fd, RPROC_SET_SHUTDOWN_ON_RELEASE, &on) || ioctl(fd, RPROC_GET_SHUTDOWN_ON_RELEASE, &got))
		FAIL("ioctl: %s", strerror(errno));
	printf("%s running, shutdown on release %d\n", dev, got);
	if (write(fd, "bogus", 5) >= 0 || errno != EINVAL)
		FAIL("write bogus: %s", strerror(errno));
	close(fd);
	wait_for(state, "offline");
	printf("%s offline after close\n", dev);

	/* the rpmsg_ctrl device of remoteproc0's bus */
	char ctrl[256] = "", vdir[1100] = "";
	snprintf(path, sizeof(path), "/sys/class/remoteproc/remoteproc0");
	d = opendir(path);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "rproc-virtio.", 13))
			snprintf(vdir, sizeof(vdir), "%s/%s", path, e->d_name);
	if (d)
		closedir(d);
	d = opendir(vdir);
	char virtio[256] = "";
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "virtio", 6) && e->d_type == DT_DIR)
			snprintf(virtio, sizeof(virtio), "%s", e->d_name);
	if (d)
		closedir(d);
	snprintf(path, sizeof(path), "/sys/bus/rpmsg/devices/%s.rpmsg_ctrl.0.0/rpmsg", virtio);
	d = opendir(path);
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "rpmsg_ctrl", 10))
			snprintf(ctrl, sizeof(ctrl), "%s", e->d_name);
	if (d)
		closedir(d);
	if (!ctrl[0])
		FAIL("no rpmsg_ctrl below %s", path);
	snprintf(path, sizeof(path), "/dev/%s", ctrl);
	int cfd = open(path, O_RDWR);
	if (cfd < 0)
		FAIL("open %s: %s", path, strerror(errno));
	struct rpmsg_endpoint_info info = { .src = RPMSG_ADDR_ANY, .dst = 1024 };
	strcpy(info.name, "board-ept");
	if (ioctl(cfd, RPMSG_CREATE_EPT_IOCTL, &info))
		FAIL("CREATE_EPT: %s", strerror(errno));
	char ept[256] = "";
	snprintf(path, sizeof(path), "/sys/class/rpmsg/%s", ctrl);
	d = opendir(path);
	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, "rpmsg", 5) || !strncmp(e->d_name, "rpmsg_ctrl", 10))
			continue;
		snprintf(buf, sizeof(buf), "%s/%s/name", path, e->d_name);
		char name[64];
		read_line(buf, name, sizeof(name));
		if (!strcmp(name, "board-ept"))
			snprintf(ept, sizeof(ept), "%s", e->d_name);
	}
	if (d)
		closedir(d);
	if (!ept[0])
		FAIL("no endpoint device below %s", path);
	snprintf(path, sizeof(path), "/dev/%s", ept);
	int efd = open(path, O_RDWR);
	if (efd < 0)
		FAIL("open %s: %s", path, strerror(errno));
	if (write(efd, "ping", 4) != 4)
		FAIL("write: %s", strerror(errno));
	struct pollfd p = { .fd = efd, .events = POLLIN };
	if (poll(&p, 1, 20000) != 1)
		FAIL("poll");
	ssize_t n = read(efd, buf, sizeof(buf));
	printf("%s echo %.*s\n", ctrl, (int)n, buf);
	if (ioctl(efd, RPMSG_DESTROY_EPT_IOCTL, NULL))
		FAIL("DESTROY_EPT: %s", strerror(errno));
	if (read(efd, buf, sizeof(buf)) >= 0 || errno != EPIPE)
		FAIL("read after DESTROY_EPT: %s", strerror(errno));
	close(efd);
	close(cfd);
	struct stat st;
	printf("after DESTROY_EPT: %s\n", stat(path, &st) ? strerror(errno) : "still there");
	return 0;
}
