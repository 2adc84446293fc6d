"""The kernel's userspace ABI for remote processors, as file nodes, served over FUSE by rprocd.

Modules:
- ``node``: the file-node model (open/read/write/ioctl/poll/release per open file, modes, errno
  via ``RprocError``), with no FUSE in it; ``kstr``: the kernel's string parsing helpers.
- ``sysfs`` (§2.1, devcoredump), ``debugfs`` (§2.2), ``cdev`` (§3), ``rpmsg_char`` (§9.5-9.6:
  rpmsg_ctrl, rpmsg_char), ``tty`` (rpmsg_tty): the semantics, over the core's and the rpmsg
  bus's public API.
- ``devices``: the kernel's device model (``sys/devices``, class and bus links, the rpmsg
  drivers' bind/unbind, driver_override, soc0, uevent, power).
- ``tree``: the whole tree of one host (plus ``rprocd/events``); ``fs``: the mfusepy server.

Deliberate differences from the kernel (each module says why):
- A 0-byte ``write()`` never reaches a handler (FUSE answers it with 0), so the debugfs and cdev
  "count must be at least 1" EINVAL cannot happen here.
- rpmsg's 15 s TX timeout (-ERESTARTSYS, errno 512) reaches userspace as ETIMEDOUT: FUSE
  refuses errnos >= 512, and EINTR would make callers retry forever.
- Writes to one file are serialized by the kernel's FUSE (libfuse 3.14 cannot ask for parallel
  direct writes); sysfs serializes per open file instead.
- ``poll()`` on ``state``/``firmware`` wakes on change (sysfs_notify semantics: POLLERR|POLLPRI
  until the file is read again); the kernel's remoteproc never notifies.
- ``rprocd/events`` (JSON lines of the host's events) has no kernel counterpart.
- ttyRPMSGn ptys start in raw mode; the character devices are regular files (no CUSE); the
  ENETRESET of opening an endpoint device whose channel vanished cannot be provoked through
  paths (the node goes with the channel, as in the kernel), only by a racing open.
- ``%pK`` pointers in debugfs always print as zeros.
"""
