"""``rproc run``: run an unmodified program where rprocd's trees sit at the kernel's paths.

Owns ``run`` (build the namespace, then ``exec`` the program: its exit status is the command's),
``prepare_namespace`` (the mounts only) and ``NamespaceError``.

The program runs in a private mount namespace (and, without root, a user namespace too) in which:

- ``/sys`` is a tmpfs holding, for every top-level name of the host's sysfs and of rprocd's
  ``sys``, a bind mount; for ``class``, ``bus``, ``devices`` and ``kernel`` (which both have)
  the merge goes one level down: rprocd's entry wins (``class/remoteproc``, ``class/rpmsg``,
  ``class/tty``, ``bus/platform``, ``bus/rpmsg``, ``bus/virtio``, ``bus/soc``,
  ``devices/platform``, ``devices/soc0``, ``kernel/debug``), the host's others stay (so
  ``/sys/devices/system/cpu`` still answers). The kernel's relative links
  (``/sys/class/remoteproc/remoteproc0 -> ../../devices/platform/...``) resolve inside it;
- ``/dev`` is rprocd's ``rprocd/devfs``: its devices (``remoteprocN``, ``rpmsg_ctrlN``,
  ``rpmsgN``, ``ttyRPMSGn``, appearing and vanishing live) beside every other entry of the
  host's /dev, each bound on its placeholder there (so ``/dev/null`` is the real node and
  ``/dev/pts``, ``/dev/shm`` the real file systems); the host's links are served as they are;
- ``/lib/firmware`` is rprocd's firmware folder (what ``lib/firmware`` in the mount links to), bound
  on the host's folder (a host without one keeps none: nothing is created outside).

Rules:
- Nothing outside the new namespace changes: every mount is made after ``unshare`` with the
  whole tree made private first; the host's /sys and /dev are reached through rprocd's empty
  ``rprocd/mnt`` directory while they are copied, then unmounted.
- ``--root /`` (a board) runs the program as it is: the kernel's trees are already there.
- Failures are ``NamespaceError`` with one line naming the path and the system call's error,
  e.g. when the kernel refuses namespaces to this user.
- This module is a client: it imports only the standard library and ``remoteproc.errors``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Sequence

from remoteproc.errors import RprocError

__all__ = ["NamespaceError", "prepare_namespace", "run"]

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

# Top-level sysfs directories that rprocd and the host both have: merged one level down.
_MERGED = ("bus", "class", "devices", "kernel")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]


class NamespaceError(RprocError):
    """The namespace could not be built (errno and a message naming what failed)."""


def _enc(p: str | None) -> bytes | None:
    return None if p is None else os.fsencode(p)


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None
           ) -> None:
    if _libc.mount(_enc(src), _enc(dst), _enc(fstype), flags, _enc(data)) != 0:
        err = ctypes.get_errno()
        what = f"bind {src} on {dst}" if flags & MS_BIND else f"mount {fstype or ''} on {dst}"
        raise NamespaceError(err, f"{what}: {os.strerror(err)}")


def _umount(path: str) -> None:
    _libc.umount2(_enc(path), MNT_DETACH)


def _unshare(flags: int) -> int:
    return 0 if _libc.unshare(flags) == 0 else ctypes.get_errno()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _enter_namespace() -> None:
    """A private mount namespace; through a user namespace when not root."""
    err = _unshare(CLONE_NEWNS)
    if err in (errno.EPERM, errno.EACCES) and os.geteuid() != 0:
        uid, gid = os.geteuid(), os.getegid()
        err = _unshare(CLONE_NEWUSER | CLONE_NEWNS)
        if not err:
            try:
                _write("/proc/self/setgroups", "deny")
                _write("/proc/self/uid_map", f"0 {uid} 1")
                _write("/proc/self/gid_map", f"0 {gid} 1")
            except OSError as exc:
                raise NamespaceError(exc.errno or errno.EPERM,
                                     f"user namespace: {exc.filename}: {exc.strerror}") from None
    if err:
        hint = " (a container may withhold CAP_SYS_ADMIN: run it with that capability)" \
            if os.geteuid() == 0 else \
            " (run as root, or allow unprivileged user namespaces: sysctl " \
            "kernel.unprivileged_userns_clone=1 / user.max_user_namespaces)"
        raise NamespaceError(err, f"cannot create a mount namespace: {os.strerror(err)}{hint}")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def _entries(path: str) -> set[str]:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def _target_like(src: str, dst: str) -> bool:
    """Create ``dst`` (a directory or an empty file, as ``src`` is); False for a link, which
    is copied instead of bound."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        return False
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o755)
    else:
        with open(dst, "w"):
            pass
    return True


def _bind_into(src: str, dst: str) -> None:
    if _target_like(src, dst):
        _mount(src, dst, None, MS_BIND | MS_REC)


def _build_sys(ours: str, stash: str) -> None:
    """``/sys``: a tmpfs of binds, rprocd's entries over the host's (module docstring)."""
    _mount("/sys", stash, None, MS_BIND | MS_REC)
    try:
        _mount("tmpfs", "/sys", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755")
        mine, host = _entries(ours), _entries(stash)
        for name in sorted(mine | host):
            dst = f"/sys/{name}"
            if name in mine and name in host and name in _MERGED:
                os.mkdir(dst, 0o755)
                sub_mine, sub_host = _entries(f"{ours}/{name}"), _entries(f"{stash}/{name}")
                for child in sorted(sub_mine | sub_host):
                    src = f"{ours}/{name}/{child}" if child in sub_mine else \
                        f"{stash}/{name}/{child}"
                    _bind_into(src, f"{dst}/{child}")
            else:
                _bind_into(f"{ours}/{name}" if name in mine else f"{stash}/{name}", dst)
        _mount(None, "/sys", None, MS_REC | MS_PRIVATE)
    finally:
        _umount(stash)


def _build_dev(devfs: str, ours: str, stash: str) -> None:
    """``/dev``: rprocd's devfs, with the host's entries bound on its placeholders."""
    _mount("/dev", stash, None, MS_BIND | MS_REC)
    try:
        _mount(devfs, "/dev", None, MS_BIND | MS_REC)
        mine = _entries(ours)
        for name in sorted(_entries(stash) - mine):
            src, dst = f"{stash}/{name}", f"/dev/{name}"
            try:
                if stat.S_ISLNK(os.lstat(src).st_mode):
                    continue  # links are served as they are
                _mount(src, dst, None, MS_BIND | MS_REC)
            except (OSError, NamespaceError):
                # a newcomer has no placeholder (ENOENT); one that vanished stays a placeholder
                continue
        _mount(None, "/dev", None, MS_REC | MS_PRIVATE)
    finally:
        _umount(stash)


def prepare_namespace(root: str) -> None:
    """Enter a new mount namespace where ``root`` (an rprocd mount) sits at the kernel's
    paths. Only this process (and what it execs) sees the result."""
    root = os.path.abspath(root)
    devfs = f"{root}/rprocd/devfs"
    stash = f"{root}/rprocd/mnt"
    if not (os.path.isdir(devfs) and os.path.isdir(stash) and os.path.isdir(f"{root}/sys")):
        raise NamespaceError(errno.ENOENT, f"{root}: not an rprocd mount (no rprocd/devfs): "
                             "start rprocd --mount there, or use --root / on a board")
    firmware = None
    with contextlib.suppress(OSError):
        firmware = os.path.realpath(f"{root}/lib/firmware", strict=True)
    _enter_namespace()
    _build_sys(f"{root}/sys", stash)
    _build_dev(devfs, f"{root}/dev", stash)
    if firmware is not None and os.path.isdir("/lib/firmware"):
        _mount(firmware, "/lib/firmware", None, MS_BIND | MS_REC)


def run(root: str, argv: Sequence[str]) -> int:
    """Run ``argv`` with rprocd's trees at ``root`` in place; exec, so this returns only on a
    failure before the program started (126: not executable, 127: not found)."""
    if not argv:
        raise RprocError(errno.EINVAL, "no program to run")
    if os.path.realpath(root) != "/":
        prepare_namespace(root)
    try:
        os.execvp(argv[0], list(argv))
    except FileNotFoundError:
        print(f"rproc run: {argv[0]}: command not found", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"rproc run: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    return 0  # pragma: no cover - execvp does not return
