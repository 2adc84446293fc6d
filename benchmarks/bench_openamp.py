"""Our host against OpenAMP's C host, both talking to the same unmodified OpenAMP ``rpmsg-echo``
remote over the process transport (``/dev/shm/openamp.shm``, ``/tmp/openamp.event.0``).

- ``rpmsg_openamp_host_ratio``: our host's pipelined msgs/s divided by the C host's, measured
  in the same run, one after the other, each against a freshly started remote: 64-byte
  payloads, at most 64 in flight (the C program's ``-w 64 -s 64``; ours streams with
  ``send_many``/``recv_many`` in bursts of 64), ``RPROC_BENCH_OPENAMP_MESSAGES`` each
  (default 50,000), best of three rounds each.

Opt-in, like the OpenAMP interop tests: ``RPROC_OPENAMP_REMOTE`` names OpenAMP's
``rpmsg-echo`` (legacy_apps, MACHINE=generic) and ``RPROC_OPENAMP_HOST_BENCH`` a C host
throughput program written against OpenAMP's public API (``rpmsg-host-bench``; it prints one
JSON line with ``msgs_per_s``). Neither is in this repository; docs/process-platform.md says
how to build both. Without them the figure is reported as not measured, never as a number.
The remote runs in a private mount namespace that shows libmetal an empty uio driver
directory (see tests/test_process_platform_openamp.py); the names are OpenAMP's fixed ones,
so a lock file serialises this benchmark with those tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator

from bench_support import NotMeasured

from remoteproc.core.host import Host
from remoteproc.platforms.process import DEFAULT_SHM_NAME, DEFAULT_SOCKET_PATH, ProcessPlatform
from remoteproc.platforms.process import shm_path as _shm_path
from remoteproc.rpmsg.core import registry
from remoteproc.rpmsg.virtio_rpmsg_bus import RpmsgBus

REMOTE = os.environ.get("RPROC_OPENAMP_REMOTE", "")
HOST_BENCH = os.environ.get("RPROC_OPENAMP_HOST_BENCH", "")
MESSAGES = int(os.environ.get("RPROC_BENCH_OPENAMP_MESSAGES", "50000"))
ROUNDS = 3
WINDOW = 64
SIZE = 64
SERVICE = "rpmsg-openamp-demo-channel"
_NS_SCRIPT = (
    "mount -t tmpfs none /sys/bus/platform/drivers && "
    'mkdir /sys/bus/platform/drivers/uio_pdrv_genirq && exec "$@"'
)


def _in_namespace(*argv: str) -> list[str]:
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _NS_SCRIPT, "openamp", *argv]


def _check() -> None:
    wanted = (("RPROC_OPENAMP_REMOTE", REMOTE), ("RPROC_OPENAMP_HOST_BENCH", HOST_BENCH))
    missing = [var for var, path in wanted if not (path and os.access(path, os.X_OK))]
    if missing:
        raise NotMeasured(f"{' and '.join(missing)} not given (OpenAMP programs, opt-in)")
    if shutil.which("unshare") is None:
        raise NotMeasured("unshare(1) is missing")


def _clean() -> None:
    for path in (_shm_path(DEFAULT_SHM_NAME), DEFAULT_SOCKET_PATH):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def _remote() -> Iterator[subprocess.Popen[bytes]]:
    _clean()
    proc = subprocess.Popen(
        _in_namespace(REMOTE), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(DEFAULT_SOCKET_PATH):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("OpenAMP rpmsg-echo did not start listening")
            time.sleep(0.005)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _clean()


def _ours() -> float:
    with _remote():
        host = Host()
        platform = ProcessPlatform("openamp")
        try:
            rproc = platform.make_rproc(auto_boot=False)
            host.add(rproc)
            rproc.boot()
            deadline = time.monotonic() + 20
            ch = None
            while ch is None:
                bus = next((b for b in registry.buses() if b.rproc is rproc), None)
                ch = bus.find_channel(SERVICE) if bus is not None else None
                if time.monotonic() > deadline:
                    raise RuntimeError("no echo channel from the OpenAMP remote")
                time.sleep(0.002)
            bus = ch.bus
            assert isinstance(bus, RpmsgBus)
            ept = bus.create_ept(None)
            burst = [bytes([0xA5]) * SIZE] * WINDOW
            best = 0.0
            for n in [2000] + [MESSAGES] * ROUNDS:
                t0 = time.perf_counter()
                sent = got = 0
                while got < n:
                    # Keep at most WINDOW in flight, as the C program does.
                    room = min(WINDOW - (sent - got), n - sent)
                    if room > 0:
                        sent += ept.send_many(burst[:room], ch.dst)
                    for m in ept.recv_many(WINDOW, 30.0):
                        if len(m) != SIZE:
                            raise AssertionError("echo of the wrong size")
                        got += 1
                rate = n / (time.perf_counter() - t0)
                if n == MESSAGES:
                    best = max(best, rate)
            ept.destroy()
            rproc.close()
            return best
        finally:
            host.close()
            platform.close()


def _theirs() -> float:
    best = 0.0
    for _ in range(ROUNDS):
        with _remote():
            out = subprocess.run(
                [HOST_BENCH, "-n", str(MESSAGES), "-w", str(WINDOW), "-s", str(SIZE), "-r", "10"],
                capture_output=True,
                text=True,
                timeout=300,
            )
        line = next(
            (ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{")), None
        )
        if out.returncode != 0 or line is None:
            raise RuntimeError(f"rpmsg-host-bench failed: {(out.stdout + out.stderr)[-500:]}")
        result = json.loads(line)
        if result.get("received") != MESSAGES:
            raise RuntimeError(f"rpmsg-host-bench lost echoes: {line}")
        best = max(best, float(result["msgs_per_s"]))
    return best


_cache: dict[str, float] = {}


def _figures() -> dict[str, float]:
    _check()
    if not _cache:
        with open("/tmp/openamp.event.0.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _cache["ours"] = _ours()
            _cache["theirs"] = _theirs()
    return _cache


def openamp_host_ratio() -> float:
    f = _figures()
    return f["ours"] / f["theirs"]


def ours_msgs_per_s() -> float:
    return _figures()["ours"]


def theirs_msgs_per_s() -> float:
    return _figures()["theirs"]


BENCHMARKS: dict[str, Callable[[], float]] = {
    "rpmsg_openamp_host_ratio": openamp_host_ratio,
    "rpmsg_openamp_our_host_msgs_per_s": ours_msgs_per_s,
    "rpmsg_openamp_c_host_msgs_per_s": theirs_msgs_per_s,
}


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:] or list(BENCHMARKS):
        try:
            print(f"{name} = {BENCHMARKS[name]():.3f}", flush=True)
        except NotMeasured as exc:
            print(f"{name} = not measured ({exc})", flush=True)
