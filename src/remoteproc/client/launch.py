"""Starting and stopping ``rprocd`` in the background: what ``rproc up`` / ``rproc down`` and
``rproc demo`` use to get a root without a board.

Owns ``Rprocd`` (one background daemon: its pid, mount point, log file) and ``start_rprocd`` /
``find_rprocd``.

Rules:
- The daemon is ``python -m remoteproc.daemon`` run by this interpreter, in its own session (a
  Ctrl-C in the terminal that ran ``rproc up`` does not reach it), its output in a log file.
  It is ready when it prints ``rprocd: serving N processors at DIR``; if it exits first or
  takes longer than the timeout, the error quotes the end of its log.
- A small JSON record per mount point in ``$XDG_RUNTIME_DIR`` (or the temp dir) lets
  ``rproc down`` find the daemon again; a record whose process is gone is ignored.
- ``stop()`` sends SIGTERM (rprocd stops every processor, then unmounts) and waits; after the
  timeout it sends SIGKILL and detaches the mount lazily, so a stop always leaves no mount.
- A mount of rprocd's whose daemon was killed (SIGKILL) stays in the mount table and answers
  ENOTCONN: ``clear_stale_mount`` removes it (``fusermount3 -u``, lazily if that fails) and says
  so; ``rproc up``, ``rproc down`` and rprocd itself call it. A mount that still answers belongs
  to a live process and is never touched.
- Only the client side of the daemon lives here: nothing imports the daemon's modules.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from remoteproc.client.root import AbiRoot
from remoteproc.errors import RprocError

__all__ = ["Rprocd", "clear_stale_mount", "find_rprocd", "start_rprocd"]

READY = "rprocd: serving"


def _state_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base)


def _record_path(mount: Path) -> Path:
    key = hashlib.sha1(str(mount).encode()).hexdigest()[:12]
    return _state_dir() / f"rprocd-{key}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Rprocd:
    """A background rprocd serving ``mount``."""

    pid: int
    mount: Path
    log: Path
    _child: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> AbiRoot:
        return AbiRoot(self.mount)

    def alive(self) -> bool:
        if self._child is not None:
            return self._child.poll() is None
        return _alive(self.pid)

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait; SIGKILL and a lazy unmount if it does not go in time."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not self._wait_exit(timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self._wait_exit(5)
        if AbiRoot(self.mount).mount_type() is not None:
            with contextlib.suppress(RprocError):
                clear_stale_mount(self.mount)
        if AbiRoot(self.mount).mount_type() is not None:
            subprocess.run(["umount", "-l", str(self.mount)], capture_output=True, check=False)
        with contextlib.suppress(OSError):
            rec = _record_path(self.mount)
            if json.loads(rec.read_text()).get("pid") == self.pid:
                rec.unlink()


def find_rprocd(mount: str | os.PathLike[str]) -> Rprocd | None:
    """The background rprocd ``rproc up`` started for ``mount``, if it still runs."""
    path = Path(os.path.abspath(mount))
    try:
        rec = json.loads(_record_path(path).read_text())
    except (OSError, ValueError):
        return None
    pid = int(rec.get("pid", 0))
    if pid <= 0 or not _alive(pid):
        return None
    return Rprocd(pid, path, Path(rec.get("log", "")))


def clear_stale_mount(mount: str | os.PathLike[str]) -> str | None:
    """Remove a dead rprocd mount at ``mount``: a ``fuse.rprocd`` mount whose server is gone
    (ENOTCONN). Returns the message to show when one was removed, None when there was none;
    ENOTCONN naming the command to run when it cannot be removed."""
    path = Path(os.path.abspath(mount))
    kind = AbiRoot(path).mount_type()
    if kind is None or not kind.endswith("rprocd"):
        return None
    try:
        os.stat(path)
        return None  # it answers: a live rprocd serves it
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            return None
    for cmd in (["fusermount3", "-u", str(path)], ["fusermount3", "-uz", str(path)],
                ["umount", "-l", str(path)]):
        try:
            subprocess.run(cmd, capture_output=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if AbiRoot(path).mount_type() is None:
            return (f"{path}: removed the stale mount of an rprocd that is gone (Transport "
                    f"endpoint is not connected) with `{' '.join(cmd[:2])}`")
    raise RprocError(errno.ENOTCONN, "the mount of an rprocd that is gone is stale and could not "
                     f"be removed: run `fusermount3 -uz {path}` as root", file=str(path))


def _check_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        raise RprocError(errno.ENODEV, "FUSE is not available: /dev/fuse is missing (install "
                         "fuse3; in a container run it with --device /dev/fuse --cap-add "
                         "SYS_ADMIN)", file="/dev/fuse")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise RprocError(errno.EACCES, "cannot open /dev/fuse: run as root (sudo) or add "
                         "yourself to the fuse group", file="/dev/fuse")


def start_rprocd(mount: str | os.PathLike[str], *, machine: str | None = None,
                 firmware_dir: str | None = None, sims: Sequence[str] = (),
                 verbose: int = 1, timeout: float = 60.0, log: str | None = None,
                 on_wait: Callable[[float], None] | None = None) -> Rprocd:
    """Start rprocd serving at ``mount`` and wait until it is mounted.

    ``sims`` replaces the default machine by in-memory processors (fast, no emulator).
    ``on_wait(elapsed)`` is called while waiting (progress display)."""
    path = Path(os.path.abspath(mount))
    _check_fuse()
    running = find_rprocd(path)
    if running is not None:
        raise RprocError(errno.EBUSY, f"rprocd (pid {running.pid}) already serves it; stop it "
                         f"with `rproc down --mount {path}`", file=str(path))
    stale = clear_stale_mount(path)
    if stale is not None:
        print(f"rproc: {stale}", file=sys.stderr)
    if AbiRoot(path).mount_type() is not None:
        raise RprocError(errno.EBUSY, "something is already mounted there", file=str(path))
    path.mkdir(parents=True, exist_ok=True)
    default_log = _state_dir() / f"rprocd-{path.name or 'root'}-{os.getpid()}.log"
    log_path = Path(log) if log else default_log
    cmd = [sys.executable, "-m", "remoteproc.daemon", "--mount", str(path)]
    if machine:
        cmd += ["--machine", machine]
    if firmware_dir:
        cmd += ["--firmware-dir", firmware_dir]
    for name in sims:
        cmd += ["--sim", name]
    cmd += ["-v"] * verbose
    with open(log_path, "wb") as out:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    daemon = Rprocd(child.pid, path, log_path, child)
    t0 = time.monotonic()
    try:
        while True:
            try:
                ready = READY in log_path.read_text(errors="replace")
            except OSError:
                ready = False
            if ready:
                break
            if child.poll() is not None:
                raise RprocError(errno.EIO, f"rprocd exited with status {child.returncode} "
                                 f"before mounting; its log ({log_path}) ends with:\n"
                                 f"{_tail(log_path)}", file=str(path))
            elapsed = time.monotonic() - t0
            if elapsed > timeout:
                raise RprocError(errno.ETIMEDOUT, f"rprocd did not mount within {timeout:g} s; "
                                 f"its log ({log_path}) ends with:\n{_tail(log_path)}",
                                 file=str(path))
            if on_wait is not None:
                on_wait(elapsed)
            time.sleep(0.05)
    except BaseException:
        daemon.stop(5)
        raise
    _record_path(path).write_text(json.dumps({"pid": child.pid, "mount": str(path),
                                              "log": str(log_path)}))
    return daemon
