"""remoteproc: the Linux remoteproc framework in Python.

Load firmware into remote processors, run their lifecycle exactly as Linux does, talk rpmsg over
virtio, and serve the kernel's userspace ABI. See docs/architecture.md for the module map.
"""

__version__ = "0.1.0"
