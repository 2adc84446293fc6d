"""``rproc fw check``: what Linux's remoteproc will do with a firmware image, before a board.

Rules:
- The checker replays the kernel's boot-time decisions with the default ELF ops on a platform
  without an IOMMU (spec §1.5 steps 1, 6 and 8, §4, §5.3, §5.4, §9.2) and reports each as a
  ``Finding``: ``error`` when Linux would refuse to boot the image, ``warning`` when it boots but
  logs or misbehaves (a vdev that never comes up, a table the firmware never sees), ``note`` for
  facts worth knowing (segments loaded at ``p_paddr``).
- Every finding carries a stable ``code`` (the vocabulary of ``firmware/fixtures/manifest.toml``),
  the entry index, its offset in the table and the device address concerned.
- The kernel stops at the first error; so does the check for errors on the boot path, but it goes
  on collecting warnings where the kernel would go on too.
- Nothing here raises on bad input: every failure of the loader or codec becomes a finding.
- Exit status: 0 = fine, 1 = warnings only, 2 = Linux would refuse the image.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from remoteproc.errors import Finding, RprocError, errno_name
from remoteproc.firmware import elf
from remoteproc.firmware import rsc_table as rt
from remoteproc.firmware.rsc_table import RSC_IGNORED

PT_LOAD = 1
PF_W = 2
# Refusals of rproc_elf_load_segments(): the boot meets them after the resource table, so a
# table or entry error comes first in the report, as it would in the kernel's log.
LOAD_STAGE_CODES = frozenset({"bad-phdr", "truncated-fw", "size-overflow", "bad-phdr-da"})
RSC_TABLE_SECTION = ".resource_table"


@dataclass
class CheckReport:
    """The findings for one image and the verdict they add up to."""

    file: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def exit_status(self) -> int:
        if self.errors:
            return 2
        return 1 if self.warnings else 0

    @property
    def verdict(self) -> str:
        return {0: "ok", 1: "boots with warnings", 2: "Linux would refuse to boot it"}[
            self.exit_status
        ]

    def codes(self) -> set[str]:
        return {f.code for f in self.findings if f.code}

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "verdict": self.verdict,
            "exit_status": self.exit_status,
            "findings": [
                {
                    "severity": f.severity,
                    "code": f.code,
                    "message": f.message,
                    "errno": errno_name(f.errno) if f.errno else None,
                    "index": f.index,
                    "offset": f.offset,
                    "da": f.da,
                    "where": f.what,
                    "spec": f.spec,
                }
                for f in self.findings
            ],
        }


class _Checker:
    def __init__(self, fw: elf.Firmware, *, host_byteorder: str, has_iommu: bool) -> None:
        self.fw = fw
        self.host_byteorder = host_byteorder
        self.has_iommu = has_iommu
        self.report = CheckReport(fw.path or fw.name)
        self.loads: list[elf.Segment] = []

    def add(self, severity: str, code: str, message: str, **kw: Any) -> None:
        self.report.findings.append(Finding(severity, message, code=code, **kw))

    def error_from(self, code: str, exc: RprocError, spec: str, **kw: Any) -> None:
        """An error finding from a refusal of the loader or codec: where the exception knows the
        location it wins, the caller's ``index``/``offset``/``da``/``what`` fill the rest (each
        key exactly once: a key present on both sides must not reach ``Finding`` twice)."""
        where = {
            "index": exc.index if exc.index is not None else kw.pop("index", None),
            "offset": exc.offset if exc.offset is not None else kw.pop("offset", None),
            "da": exc.da if exc.da is not None else kw.pop("da", None),
            "what": exc.what or kw.pop("what", None),
        }
        for key in where:
            kw.pop(key, None)
        self.add("error", code, exc.message, errno=exc.errno, spec=spec, **where, **kw)

    # -- §4.1, §4.3, §4.4: the loader's own diagnostics -------------------------------------------
    def check_elf(self) -> elf.ElfImage | None:
        """The ELF-level findings come from the loader (one implementation of §4); the checker
        only decides what they mean for the target host."""
        for finding in elf.check_image(self.fw):
            # The loader's endianness note is about the CPU running it; the target is ours.
            if finding.code not in ("big-endian", "little-endian"):
                self.report.findings.append(finding)
        image_order = self._image_byteorder()
        if image_order is not None and image_order != self.host_byteorder:
            host = "little" if self.host_byteorder == "<" else "big"
            # The first of the kernel's header checks this image fails: it goes first.
            self.report.findings.insert(0, Finding(
                "error",
                f"Unsupported firmware endianness: Linux on a {host}-endian CPU refuses this "
                "image (remoteproc here reads it in its own byte order)",
                errno=errno.EINVAL,
                offset=5,  # EI_DATA
                spec="§4.1",
                code="big-endian" if image_order == ">" else "little-endian",
            ))
        try:
            image = self.fw.elf
        except RprocError:
            return None
        self.loads = [s for s in image.segments if s.type == PT_LOAD]
        return image

    def _image_byteorder(self) -> str | None:
        """EI_DATA, when the kernel's checks before it (size, magic, class) pass."""
        data = bytes(self.fw.data[:64])
        if len(data) < 52 or data[:4] != b"\x7fELF" or data[4] not in (1, 2):
            return None
        if data[4] == 2 and len(data) < 64:
            return None
        return {1: "<", 2: ">"}.get(data[5])

    def in_segments(self, da: int, length: int) -> bool:
        return any(s.paddr <= da and da + length <= s.paddr + s.memsz for s in self.loads)

    def check_table(self, image: elf.ElfImage) -> rt.ResourceTable | None:
        found = elf.locate_rsc_table(self.fw).table
        if found is None:
            return None
        seg = next(
            (
                s
                for s in self.loads
                if s.paddr <= found.addr and found.addr + found.size <= s.paddr + s.memsz
            ),
            None,
        )
        if seg is not None and not seg.flags & PF_W:
            self.add(
                "note",
                "rsc-table-readonly",
                f"the table lies in read-only segment {seg.index}: Linux writes into it anyway "
                "(vring da, notify ids, virtio status), so the firmware must not protect it",
                da=found.addr,
                spec="§5.2",
            )
        view = memoryview(bytes(self.fw.data[found.offset : found.offset + found.size]))
        return rt.ResourceTable(view, image.byteorder)

    # -- §5.3 / §5.4 -----------------------------------------------------------------------------
    def check_entries(self, table: rt.ResourceTable) -> None:
        ret = 0
        byteorder = table.byteorder
        last: rt.RawEntry | None = None
        # (type, location) of vendor entries ignored so far; the ones still ignored at the end
        # become one boot-failing finding, the others are warnings.
        pending_vendor: list[tuple[int, dict[str, Any]]] = []
        walk = table.entries()
        while True:
            # The kernel runs each handler before it looks at the next offset, so an entry
            # that lies outside the table only stops the walk where it stands.
            try:
                raw = next(walk, None)
            except RprocError as exc:
                self.error_from("rsc-truncated", exc, "§5.3", what="resource entry")
                return
            if raw is None:
                break
            last = raw
            where = {"index": raw.index, "offset": raw.offset, "what": "resource entry"}
            if rt.RSC_VENDOR_START <= raw.type <= rt.RSC_VENDOR_END:
                pending_vendor.append((raw.type, where))
                ret = RSC_IGNORED
                continue
            if raw.type >= rt.RSC_LAST:
                self.add(
                    "warning", "unknown-type", f"unsupported resource {raw.type}",
                    spec="§5.3", **where,
                )
                continue
            try:
                stop = self._entry(raw, byteorder, where)
            except RprocError as exc:
                self.error_from(f"{raw.type_name}-invalid", exc, "§5.4", **where)
                return
            if stop:
                return
            self._vendor_warnings(pending_vendor)
            pending_vendor = []
            ret = 0
        if ret != RSC_IGNORED or last is None:
            self._vendor_warnings(pending_vendor)
        else:
            self.add(
                "error",
                "vendor-last-ignored",
                "the last entries end with an ignored vendor resource, so rproc_handle_resources() "
                "returns 1 (RSC_IGNORED) and Linux fails the boot ('Failed to process resources: "
                "1'); this project boots it (docs/kernel-differences.md)",
                index=last.index,
                offset=last.offset,
                what="resource entry",
                spec="§5.3, §10.3",
            )

    def _vendor_warnings(self, pending: list[tuple[int, dict[str, Any]]]) -> None:
        for rsc_type, where in pending:
            self.add(
                "warning",
                "vendor-ignored",
                f"unsupported vendor resource {rsc_type} (no platform handle_rsc)",
                spec="§5.3",
                **where,
            )

    def _entry(self, raw: rt.RawEntry, byteorder: str, where: dict[str, Any]) -> bool:
        if raw.type == rt.RSC_CARVEOUT:
            cv = rt.Carveout.from_entry(raw, byteorder)
            if "%" in cv.name:
                self.add(
                    "warning",
                    "carveout-name-percent",
                    f"carveout name {cv.name!r} contains '%': Linux uses it as a printf format "
                    "when looking up a registered memory region, so the lookup can misbehave",
                    spec="§5.4",
                    da=cv.da,
                    **where,
                )
            return False
        if raw.type == rt.RSC_DEVMEM:
            # rproc_handle_devmem() looks for the IOMMU domain before the entry's size, so a
            # truncated devmem entry is refused for the missing IOMMU first.
            dm = rt.Devmem.from_entry(raw, byteorder, check=False)
            if not self.has_iommu:
                try:
                    da: int | None = dm.da
                except RprocError:
                    da = None
                self.add(
                    "error",
                    "devmem-no-iommu",
                    "devmem rsc needs an iommu: on a processor without one Linux fails the "
                    "boot with EINVAL and logs nothing (use --iommu if the platform has one)",
                    errno=errno.EINVAL,
                    spec="§5.4",
                    da=da,
                    **where,
                )
                return True
            rt.Devmem.from_entry(raw, byteorder)
            return False
        if raw.type == rt.RSC_TRACE:
            tr = rt.Trace.from_entry(raw, byteorder)
            if not self.in_segments(tr.da, tr.len):
                self.add(
                    "warning",
                    "trace-outside-segments",
                    f"trace buffer [{tr.da:#x}, {tr.da + tr.len:#x}) is in no loaded segment: "
                    "reading trace files depends on the platform mapping that address",
                    spec="§2.2",
                    da=tr.da,
                    **where,
                )
            if "%" in tr.name:
                self.add(
                    "warning", "trace-name-percent",
                    f"trace name {tr.name!r} contains '%' (used as a format string by Linux)",
                    spec="§5.4", **where,
                )
            return False
        vdev = rt.Vdev.from_entry(raw, byteorder)
        self._vdev(vdev, where)
        return False

    def _vdev(self, vdev: rt.Vdev, where: dict[str, Any]) -> None:
        for i, ring in enumerate(vdev.vrings):
            rw = dict(where, what=f"resource entry {where['index']} vring", index=i)
            if ring.num == 0 or ring.align == 0:
                self.add(
                    "warning",
                    "vring-align-zero" if ring.align == 0 else "vring-num-zero",
                    f"invalid qsz ({ring.num}) or alignment ({ring.align}): the vdev probe fails, "
                    "Linux boots without this virtio device",
                    spec="§5.4 step 6c",
                    **rw,
                )
            elif ring.num & (ring.num - 1):
                self.add(
                    "warning",
                    "vring-num-not-pow2",
                    f"vring num {ring.num} is not a power of two: creating the virtqueue fails "
                    "with ENOMEM, so the rpmsg device never comes up although the boot succeeds",
                    spec="§9.2",
                    **rw,
                )
            if ring.da not in (rt.FW_RSC_ADDR_ANY,) and ring.num and ring.align:
                size = _page_align(_vring_size(ring.num, ring.align))
                if ring.da == 0:
                    self.add(
                        "warning",
                        "vring-da-zero",
                        "vring da 0 is a fixed address for Linux (FW_RSC_ADDR_ANY is 0xffffffff): "
                        "without a matching vdevNvringM memory region the ring is allocated "
                        "elsewhere, Linux warns 'Allocated carveout doesn't fit device address "
                        "request' and writes da 0 back",
                        spec="§6.2, §6.3",
                        da=0,
                        **rw,
                    )
                elif not self.in_segments(ring.da, size):
                    self.add(
                        "warning",
                        "vring-outside-segments",
                        f"fixed vring [{ring.da:#x}, {ring.da + size:#x}) is in no loaded segment: "
                        "the platform must provide a vdevNvringM memory region there",
                        spec="§6.3",
                        da=ring.da,
                        **rw,
                    )


def _vring_size(num: int, align: int) -> int:
    def up(x: int, a: int) -> int:
        return (x + a - 1) // a * a

    return up(16 * num + 2 * (3 + num), align) + 2 * 3 + 8 * num


def _page_align(n: int) -> int:
    return (n + 4095) // 4096 * 4096


def check_firmware(
    fw: elf.Firmware, *, host_byteorder: str = "<", has_iommu: bool = False
) -> CheckReport:
    """Replay Linux's boot-time decisions for ``fw``; never raises for bad images."""
    checker = _Checker(fw, host_byteorder=host_byteorder, has_iommu=has_iommu)
    image = checker.check_elf()
    load_errors = [f for f in checker.report.findings
                   if f.severity == "error" and f.code in LOAD_STAGE_CODES]
    checker.report.findings = [f for f in checker.report.findings if f not in load_errors]
    if image is not None and not checker.report.errors:
        table = checker.check_table(image)
        if table is not None:
            checker.check_entries(table)
    # The kernel's order: sanity checks, then the table and its entries, then loading.
    checker.report.findings.extend(load_errors)
    return checker.report
