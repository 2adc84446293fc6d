/*
 * A board program as Linux-side rpmsg samples are written: find a channel under
 * /sys/bus/rpmsg/devices, bind it to rpmsg_chrdev (driver_override + bind), find the rpmsgN the
 * driver created below the channel, open /dev/rpmsgN by path, poll/epoll it, echo, unbind.
 * Prints what it checks; exits non-zero at the first surprise.
 *
 *   rpmsg_bind_echo CHANNEL-NAME
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)

static int write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	ssize_t n = write(fd, text, strlen(text));
	int err = n < 0 ? errno : 0;
	close(fd);
	return err;
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		FAIL("open %s: %s", path, strerror(errno));
	ssize_t n = read(fd, buf, size - 1);
	if (n < 0)
		FAIL("read %s: %s", path, strerror(errno));
	buf[n] = 0;
	close(fd);
}

static int find_rpmsg_dev(const char *chan, char *out, size_t size)
{
	char path[512];
	snprintf(path, sizeof(path), "/sys/bus/rpmsg/devices/%s/rpmsg", chan);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	struct dirent *e;
	int found = -1;
	while ((e = readdir(d))) {
		if (!strncmp(e->d_name, "rpmsg", 5) && strncmp(e->d_name, "rpmsg_ctrl", 10)) {
			snprintf(out, size, "%s", e->d_name);
			found = 0;
		}
	}
	closedir(d);
	return found;
}

int main(int argc, char **argv)
{
	const char *want = argc > 1 ? argv[1] : "rpmsg-openamp-demo-channel";
	char chan[256] = "", path[512], buf[512], dev[256];
	DIR *d = opendir("/sys/bus/rpmsg/devices");
	if (!d)
		FAIL("opendir /sys/bus/rpmsg/devices: %s", strerror(errno));
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/rpmsg/devices/%s/name", e->d_name);
		read_file(path, buf, sizeof(buf));
		buf[strcspn(buf, "\n")] = 0;
		if (!strcmp(buf, want) && !chan[0])
			snprintf(chan, sizeof(chan), "%s", e->d_name);
	}
	closedir(d);
	if (!chan[0])
		FAIL("no channel named %s", want);
	printf("channel %s\n", chan);

	snprintf(path, sizeof(path), "/sys/bus/rpmsg/devices/%s/driver_override", chan);
	if (write_file(path, "rpmsg_chrdev\n"))
		FAIL("driver_override: %s", strerror(errno));
	read_file(path, buf, sizeof(buf));
	printf("driver_override %s", buf);
	int err = write_file("/sys/bus/rpmsg/drivers/rpmsg_ctrl/bind", chan);
	printf("bind to rpmsg_ctrl: %s\n", strerror(err));  /* override names another driver */
	if (write_file("/sys/bus/rpmsg/drivers/rpmsg_chrdev/bind", chan))
		FAIL("bind: %s", strerror(errno));
	err = write_file("/sys/bus/rpmsg/drivers/rpmsg_chrdev/bind", chan);
	printf("bind again: %s\n", strerror(err));
	err = write_file("/sys/bus/rpmsg/drivers/rpmsg_chrdev/bind", "virtio9.nothing.-1.1");
	printf("bind unknown: %s\n", strerror(err));

	if (find_rpmsg_dev(chan, dev, sizeof(dev)))
		FAIL("no rpmsgN below %s", chan);
	snprintf(path, sizeof(path), "/sys/class/rpmsg/%s/dev", dev);
	read_file(path, buf, sizeof(buf));
	printf("device %s dev %s", dev, buf);

	snprintf(path, sizeof(path), "/dev/%s", dev);
	int fd = open(path, O_RDWR | O_NONBLOCK);
	if (fd < 0)
		FAIL("open %s: %s", path, strerror(errno));
	if (read(fd, buf, sizeof(buf)) >= 0 || errno != EAGAIN)
		FAIL("non-blocking read of an empty queue: %s", strerror(errno));
	printf("empty read: %s\n", strerror(errno));

	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, 10000) != 1 || !(pfd.revents & POLLOUT))
		FAIL("poll POLLOUT: %d", pfd.revents);
	const char *msg = "hello from a board program";
	if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
		FAIL("write: %s", strerror(errno));
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 20000) != 1 || !(pfd.revents & POLLIN))
		FAIL("poll POLLIN: %d", pfd.revents);
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n != (ssize_t)strlen(msg) || memcmp(buf, msg, n))
		FAIL("echo: got %zd bytes", n);
	printf("poll echo: ok\n");

	int ep = epoll_create1(0);
	struct epoll_event ev = { .events = EPOLLIN }, got;
	ev.data.fd = fd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		FAIL("epoll_ctl: %s", strerror(errno));
	write(fd, "epoll", 5);
	if (epoll_wait(ep, &got, 1, 20000) != 1 || !(got.events & EPOLLIN))
		FAIL("epoll_wait");
	n = read(fd, buf, sizeof(buf));
	printf("epoll echo: %.*s\n", (int)n, buf);

	fd_set rd;
	FD_ZERO(&rd);
	FD_SET(fd, &rd);
	struct timeval tv = { .tv_sec = 20 };
	write(fd, "select", 6);
	if (select(fd + 1, &rd, NULL, NULL, &tv) != 1)
		FAIL("select");
	n = read(fd, buf, sizeof(buf));
	printf("select echo: %.*s\n", (int)n, buf);
	close(ep);
	close(fd);

	err = write_file("/sys/bus/rpmsg/drivers/rpmsg_tty/unbind", chan);
	printf("unbind from another driver: %s\n", strerror(err));
	if (write_file("/sys/bus/rpmsg/drivers/rpmsg_chrdev/unbind", chan))
		FAIL("unbind: %s", strerror(errno));
	struct stat st;
	snprintf(path, sizeof(path), "/dev/%s", dev);
	printf("after unbind %s: %s\n", path, stat(path, &st) ? strerror(errno) : "still there");
	snprintf(path, sizeof(path), "/sys/bus/rpmsg/devices/%s/driver_override", chan);
	if (write_file(path, "\n"))
		FAIL("clearing driver_override: %s", strerror(errno));
	read_file(path, buf, sizeof(buf));
	printf("driver_override %s", buf);
	return 0;
}
