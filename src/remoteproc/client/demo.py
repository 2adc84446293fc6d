"""``rproc demo``: the whole remoteproc lifecycle on a root, told step by step.

Owns ``Demo`` (the steps and their results) and ``Step``. The steps use only the client
library, so they run the same against rprocd's default machine or a board:

1. boot an idle processor: firmware loaded, resources handled (debugfs resource table and
   carveouts);
2. trace: what its firmware wrote in its trace buffer;
3. firmware swap on the processor that speaks rpmsg: stop, choose the bundled firmware that can
   also crash for real (``crash-<core>.elf`` beside ``rpmsg-echo-<core>.elf``), start: the
   vdev, vrings and rpmsg buffer are set up again;
4. rpmsg: echo through the "rpmsg-raw" channel the firmware announced, and latency figures;
5. crash: a real fault inside the firmware when it offers one over rpmsg ("crash wdog"),
   else debugfs ``crash``; the coredump fetched from devcoredump; recovery; echo again;
6. stop what was booted and put the replaced firmware back;
7. detach and re-attach the core a boot loader started: attach if it is detached, detach
   (it keeps running), attach again, echo each time, and leave it as it was found.

Rules:
- Every step has a timeout and ends as passed, failed (with the error's one line) or skipped
  (a step it depends on failed, or the machine lacks what it needs); one failure does not
  stop the demo, and the processors are left as they were found where the demo can.
- Progress goes to the console as it happens (a spinner per step, one line per result).
"""

from __future__ import annotations

import errno
import re
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remoteproc.client.root import AbiRoot
from remoteproc.client.rpmsg import Endpoint, EndpointDevice, channel_device, endpoint_devices
from remoteproc.client.rproc import RemoteProc
from remoteproc.errors import RprocError

__all__ = ["Demo", "Step", "summarize_core"]

ECHO_CHANNEL = "rpmsg-raw"


@dataclass
class Step:
    title: str
    status: str = "skipped"  # passed, failed, skipped
    detail: str = ""
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)  # extra output shown under the step


class _Skip(Exception):
    pass


def summarize_core(data: bytes) -> str:
    """``"ELF32 core, EM 40, 3 program headers (1 note, 2 load)"`` from a core file's head."""
    if data[:4] != b"\x7fELF" or len(data) < 52:
        return "not an ELF file"
    is64 = data[4] == 2
    bo = "<" if data[5] == 1 else ">"
    e_type, e_machine = struct.unpack_from(bo + "HH", data, 16)
    phoff = struct.unpack_from(bo + ("Q" if is64 else "I"), data, 32 if is64 else 28)[0]
    phentsize, phnum = struct.unpack_from(bo + "HH", data, 54 if is64 else 42)
    kinds = {1: 0, 4: 0}
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 <= len(data):
            p_type = struct.unpack_from(bo + "I", data, off)[0]
            if p_type in kinds:
                kinds[p_type] += 1
    what = "core" if e_type == 4 else f"type {e_type}"
    notes = f"{kinds[4]} note, " if kinds[4] else ""
    return (f"ELF{64 if is64 else 32} {what}, machine {e_machine}, {phnum} program headers "
            f"({notes}{kinds[1]} load)")


def _resources(text: str) -> str:
    """``"vdev, trace, carveout"`` from debugfs ``resource_table``."""
    kinds = re.findall(r"^Entry \d+ is of type (\w+)", text, re.M)
    return ", ".join(kinds) if kinds else "no resource table"


def _carveouts(text: str) -> list[str]:
    return re.findall(r"^\tName: (.*)$", text, re.M)


class Demo:
    """Run with ``run()``; ``console`` is a rich Console; dumps are saved in ``workdir``."""

    def __init__(self, root: AbiRoot, console: Any, workdir: Path, *,
                 timeout: float = 20.0) -> None:
        self.root = root
        self.console = console
        self.workdir = workdir
        self.timeout = timeout
        self.steps: list[Step] = []
        self.target: RemoteProc | None = None
        self.talker: RemoteProc | None = None  # the processor that speaks rpmsg
        self.restore: tuple[RemoteProc, str] | None = None  # firmware to put back at the end
        self._failed: set[str] = set()
        self._known: set[int] = set()

    # -- step machinery

    def _run(self, title: str, body: Callable[[Step], None], *,
             needs: tuple[str, ...] = ()) -> None:
        st = Step(title)
        self.steps.append(st)
        missing = [n for n in needs if n in self._failed]
        t0 = time.monotonic()
        try:
            if missing:
                raise _Skip(f"needs {', '.join(missing)}")
            with self.console.status(f"[bold]{title}[/]..."):
                body(st)
            st.status = "passed"
        except _Skip as exc:
            st.status, st.detail = "skipped", str(exc)
            self._failed.add(title)
        except RprocError as exc:
            st.status, st.detail = "failed", str(exc)
            self._failed.add(title)
        st.seconds = time.monotonic() - t0
        mark = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]"}
        self.console.print(f"{mark[st.status]} [bold]{title}[/] ({st.seconds:.1f} s): ",
                           end="", highlight=False)
        self.console.print(st.detail, highlight=False, markup=False)
        for line in st.lines:
            self.console.print(f"    {line}", highlight=False, markup=False)

    # -- helpers

    def _endpoint(self, proc: RemoteProc, timeout: float) -> Endpoint:
        """Open the echo channel's char device once the firmware has announced it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._channel_device(proc).open()
            except RprocError as exc:
                # not announced yet, or re-created under us right after a recovery
                if exc.errno not in (errno.ENOENT, errno.ENETRESET, errno.EBUSY):
                    raise
            if time.monotonic() >= deadline:
                raise RprocError(errno.ETIMEDOUT, f"{proc.dev_name} announced no "
                                 f"{ECHO_CHANNEL!r} channel within {timeout:g} s (does its "
                                 "firmware speak rpmsg?)", file=str(self.root.dev_dir))
            time.sleep(0.05)

    def _channel_device(self, proc: RemoteProc) -> EndpointDevice:
        try:
            return channel_device(proc, ECHO_CHANNEL)
        except RprocError as exc:
            if exc.errno != errno.ENOTUNIQ:
                raise
        # sysfs names no owners and other processors have the channel too: ours is the one
        # that appeared since the demo booted or attached its processor
        fresh = [d for d in endpoint_devices(self.root, proc)
                 if d.name == ECHO_CHANNEL and d.index not in self._known]
        if len(fresh) != 1:
            raise RprocError(errno.ENOTUNIQ, f"cannot tell which {ECHO_CHANNEL!r} device "
                             f"belongs to {proc.dev_name}", file=str(self.root.dev_dir))
        return fresh[0]

    def _remember_devices(self) -> None:
        """Note the rpmsg devices that exist before a processor comes up (see above)."""
        self._known = {d.index for d in endpoint_devices(self.root)}

    def _echo(self, proc: RemoteProc, text: str) -> str:
        with self._endpoint(proc, self.timeout) as ept:
            ept.drain()
            ept.send(text.encode())
            reply = ept.recv(self.timeout).decode("utf-8", "replace")
        if reply != text:
            raise RprocError(errno.EPROTO, f"sent {text!r}, got back {reply!r}")
        return reply

    def _trace_tail(self, proc: RemoteProc, lines: int = 4, about: str | None = None
                    ) -> list[str]:
        """The last ``lines`` of trace0 (those matching the regex ``about`` if any do)."""
        try:
            text = proc.trace(0).splitlines()
        except RprocError:
            return []
        if about is not None:
            text = [t for t in text if re.search(about, t)] or text
        return [f"trace0| {t}" for t in text[-lines:]]

    # -- the steps

    def _settle(self, procs: list[RemoteProc], quiet: float = 0.5) -> None:
        """Wait until no state has changed for ``quiet`` seconds: an auto-boot still in
        flight shows "offline", and a start written then would only take a second reference
        on the processor (the kernel's power count), so a later stop would not stop it."""
        deadline = time.monotonic() + self.timeout
        last = [p.state_or_unknown() for p in procs]
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = [p.state_or_unknown() for p in procs]
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return

    def run(self) -> list[Step]:
        procs = self.root.processors()
        self._settle(procs)
        self.console.print(f"{len(procs)} processors under {self.root.root}: "
                           + ", ".join(f"{p.dev_name} {p.name} ({p.state})" for p in procs),
                           highlight=False)
        self._run("boot", lambda st: self._boot(st, procs))
        self._run("trace", self._trace, needs=("boot",))
        self._run("firmware swap", lambda st: self._swap(st, procs))
        self._run("rpmsg echo", self._rpmsg, needs=("firmware swap",))
        self._run("crash, coredump, recovery", self._crash, needs=("firmware swap",))
        self._run("stop", self._stop)
        self._run("detach and re-attach", lambda st: self._reattach(st, procs))
        return self.steps

    def _start_and_describe(self, p: RemoteProc) -> str:
        """Start ``p``, wait until it runs; what its firmware asked for, in a few words."""
        self._remember_devices()
        t0 = time.monotonic()
        p.start()
        p.wait_state("running", self.timeout)
        ms = (time.monotonic() - t0) * 1000
        res = _resources(p.resource_table())
        carve = _carveouts(p.carveout_memories())
        text = f"{p.dev_name} ({p.name}) loaded {p.firmware}, running in {ms:.0f} ms; " \
               f"resource table: {res}"
        return text + (f"; carveouts: {', '.join(carve)}" if carve else "")

    def _boot(self, st: Step, procs: list[RemoteProc]) -> None:
        """Boot the idle processor (offline; else stop a running one and boot it again)."""
        candidates = [p for p in procs if p.state in ("offline", "running")]
        if not candidates:
            raise _Skip("no offline or running processor to boot")
        candidates.sort(key=lambda p: p.state != "offline")
        p = self.target = candidates[0]
        if p.state == "running":
            p.stop()
            p.wait_state("offline", self.timeout)
        st.detail = self._start_and_describe(p)

    def _trace(self, st: Step) -> None:
        p = self._target()
        traces = p.traces()
        if not traces:
            raise _Skip(f"{p.firmware} declares no trace buffer")
        # The firmware writes its trace as it runs: wait (with a deadline) for its first
        # whole line rather than for a fixed time, which a loaded machine can outlast.
        deadline = time.monotonic() + self.timeout
        text = p.trace(traces[0])
        while "\n" not in text and time.monotonic() < deadline:
            time.sleep(0.02)
            text = p.trace(traces[0])
        st.detail = f"{p.name}: trace{traces[0]} holds {len(text.splitlines())} lines"
        st.lines += self._trace_tail(p, 5)

    def _swap(self, st: Step, procs: list[RemoteProc]) -> None:
        """Pick the processor that speaks rpmsg and give it the firmware that can also crash
        for real (the bundled crash-<core>.elf beside rpmsg-echo-<core>.elf), as a user
        replaces firmware: stop, write the name, start."""
        talkers = [p for p in procs if p.state == "running"
                   and "vdev" in _resources(p.resource_table())]
        if not talkers and self.target is not None and self.target.state == "running" \
                and "vdev" in _resources(self.target.resource_table()):
            talkers = [self.target]
        if not talkers:
            raise _Skip("no running processor has an rpmsg vdev")
        p = self.talker = talkers[0]
        original = p.firmware
        m = re.fullmatch(r"rpmsg-echo-(.+)", original)
        p.stop()
        p.wait_state("offline", self.timeout)
        p.set_coredump_mode("enabled")
        if m is not None:
            self.restore = (p, original)
            p.set_firmware(f"crash-{m.group(1)}")
            try:
                st.detail = self._start_and_describe(p)
                return
            except RprocError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                p.set_firmware(original)  # no crash variant here: keep the echo firmware
                self.restore = None
        st.detail = self._start_and_describe(p) + " (same firmware)"

    def _rpmsg(self, st: Step) -> None:
        p = self._talker()
        with self._endpoint(p, self.timeout) as ept:
            ept.drain()
            ept.send(b"hello from Linux")
            reply = ept.recv(self.timeout)
            from remoteproc.client.bench import echo_bench

            result = echo_bench(ept, count=100, size=64, timeout=self.timeout)
        st.detail = (f"{p.name}: {ept.path.name} ({ECHO_CHANNEL}, remote address {ept.dst}) "
                     f"echoed {reply.decode('utf-8', 'replace')!r}; 100 round trips: p50 "
                     f"{result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us")

    def _crash(self, st: Step) -> None:
        p = self._talker()
        last = max((d.index for d in p.coredumps()), default=-1)
        how = self._crash_from_inside(p)
        if how is None:
            p.crash("watchdog")
            how = "debugfs crash (watchdog)"
        dump = p.wait_coredump(self.timeout, after=last)
        dest = self.workdir / f"{p.name}.core"
        size = dump.save(dest)
        summary = summarize_core(dest.read_bytes()[:4096])
        p.wait_state("running", self.timeout)
        self._remember_devices()
        self._echo(p, "back after recovery")
        st.detail = (f"{p.name}: {how} -> {dump.name} saved to {dest} ({size} bytes, "
                     f"{summary}) -> recovered: running, echo works again")
        st.lines.append(f"inspect it: gdb-multiarch {p.firmware} {dest}")

    def _crash_from_inside(self, p: RemoteProc) -> str | None:
        """Ask the firmware to let its watchdog expire (the bundled crash firmware obeys
        ``crash wdog``); None if it only echoes."""
        try:
            with self._endpoint(p, 2.0) as ept:
                ept.drain()
                ept.send(b"crash wdog")
                reply = ept.recv(2.0).decode("utf-8", "replace")
        except RprocError:
            return None
        if reply.startswith("crashing"):
            return f"firmware watchdog left to expire ({reply!r})"
        return None

    def _stop(self, st: Step) -> None:
        """Stop what the demo booted; put back the firmware it replaced."""
        done = []
        p = self.target
        if p is not None and p.state == "running":
            p.stop()
            p.wait_state("offline", self.timeout)
            done.append(f"{p.dev_name} ({p.name}) is offline, its trace buffer gone")
        if self.restore is not None:
            q, firmware = self.restore
            self.restore = None
            if q.state != "offline":
                q.stop()
                q.wait_state("offline", self.timeout)
            q.set_firmware(firmware)
            q.start()
            q.wait_state("running", self.timeout)
            done.append(f"{q.name} runs {firmware} again")
        if not done:
            raise _Skip("nothing to stop")
        st.detail = "; ".join(done)

    def _reattach(self, st: Step, procs: list[RemoteProc]) -> None:
        early = [p for p in procs if p.state in ("detached", "attached")]
        if not early:
            raise _Skip("no processor was started by a boot loader (none is detached)")
        p = early[0]
        found = p.state
        if found == "detached":
            self._remember_devices()
            p.start()
            p.wait_state("attached", self.timeout)
        self._echo_if_rpmsg(p, st, "attached")
        p.detach()
        p.wait_state("detached", self.timeout)
        self._remember_devices()
        p.start()
        p.wait_state("attached", self.timeout)
        self._echo_if_rpmsg(p, st, "re-attached")
        st.lines += self._trace_tail(p, 3, about="attach|detach")
        if found == "detached":
            p.detach()
            p.wait_state("detached", self.timeout)
        st.detail = (f"{p.dev_name} ({p.name}): attached without loading firmware, "
                     f"detached (it kept running), attached again; left {p.state}")

    def _echo_if_rpmsg(self, p: RemoteProc, st: Step, when: str) -> None:
        try:
            self._echo(p, f"hello {when}")
            st.lines.append(f"{when}: echo over {ECHO_CHANNEL} works")
        except RprocError as exc:
            if exc.errno != errno.ETIMEDOUT:
                raise
            st.lines.append(f"{when}: no {ECHO_CHANNEL} channel ({exc.message})")

    def _target(self) -> RemoteProc:
        if self.target is None:
            raise _Skip("no processor booted")
        return self.target

    def _talker(self) -> RemoteProc:
        if self.talker is None:
            raise _Skip("no processor speaks rpmsg")
        return self.talker

    @property
    def ok(self) -> bool:
        return all(s.status != "failed" for s in self.steps)
