"""The resource-table codec: parse and build the structs of ``remoteproc.h`` (spec §5.1).

This module owns the binary layout of the resource table and nothing else: the per-type
handlers that act on entries live in ``core/resources.py``, the ELF lookup of the section in
``firmware/elf.py``.

Rules:
- Every kernel struct is declared once, as a ``StructLayout`` named after the kernel struct, and
  the same declaration is used to parse, to build and to write fields back in place.
- Every access takes a ``byteorder`` (``"<"`` or ``">"``). The kernel reads host order; we read
  the firmware image's own order, so a big-endian image's table is big-endian.
- Views never copy: ``ResourceTable`` and the typed entry views are windows on the caller's
  buffer, which may be device memory. A setter writes the bytes of that one field in place, so
  the host's write-backs (§5.2) land where the firmware reads them.
- Bad input never escapes as anything but ``RprocError``; no byte string makes the codec read
  outside the buffer it was given. Where the kernel has a message we use its words (§4.4, §5.3,
  §5.4); the location (entry index, offset) travels in the error's fields, not the text.
- Deliberate differences from the kernel, all about not reading outside the table:
  * the §5.3 walk also reports an entry offset that is negative as "rsc table is truncated"
    (the kernel only checks ``avail < 0`` and would read before the table);
  * a vdev entry whose 24-byte fixed part does not fit is "vdev rsc is truncated" before
    ``num_of_vrings``/``config_len`` are read (the kernel reads them first, out of bounds);
  * ``format_resource_table`` renders a broken table up to the first byte it cannot read and then
    ends with a line saying why it stopped; names are cut at their 32 bytes (the kernel's ``%s``
    runs past an unterminated name).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, overload

from remoteproc.errors import RprocError

__all__ = [
    "CARVEOUT_SIZE",
    "DEVMEM_SIZE",
    "FW_RSC_ADDR_ANY",
    "FW_RSC_CARVEOUT",
    "FW_RSC_DEVMEM",
    "FW_RSC_HDR",
    "FW_RSC_TRACE",
    "FW_RSC_VDEV",
    "FW_RSC_VDEV_VRING",
    "NAME_SIZE",
    "RESOURCE_TABLE",
    "RSC_CARVEOUT",
    "RSC_DEVMEM",
    "RSC_HANDLED",
    "RSC_HDR_SIZE",
    "RSC_IGNORED",
    "RSC_LAST",
    "RSC_TRACE",
    "RSC_VDEV",
    "RSC_VENDOR_END",
    "RSC_VENDOR_START",
    "RVDEV_NUM_VRINGS",
    "TABLE_HDR_SIZE",
    "TRACE_SIZE",
    "VDEV_SIZE",
    "VRING_SIZE",
    "Carveout",
    "Devmem",
    "RawEntry",
    "ResourceTable",
    "StructLayout",
    "TableBuilder",
    "Trace",
    "Vdev",
    "Vring",
    "describe_table",
    "format_resource_table",
    "parse_entry",
    "rsc_type_name",
]

# enum fw_resource_type
RSC_CARVEOUT = 0
RSC_DEVMEM = 1
RSC_TRACE = 2
RSC_VDEV = 3
RSC_LAST = 4
RSC_VENDOR_START = 128
RSC_VENDOR_END = 512  # inclusive, as the kernel's range check

# enum rsc_handling_status: what a platform's handle_rsc returns for one entry
RSC_HANDLED = 0
RSC_IGNORED = 1

FW_RSC_ADDR_ANY = 0xFFFFFFFF
RVDEV_NUM_VRINGS = 2
NAME_SIZE = 32

_TYPE_NAMES = {RSC_CARVEOUT: "carveout", RSC_DEVMEM: "devmem", RSC_TRACE: "trace", RSC_VDEV: "vdev"}


def rsc_type_name(t: int) -> str:
    """``0`` -> ``"carveout"``, ``200`` -> ``"vendor 200"``, ``5`` -> ``"unknown 5"``."""
    if t in _TYPE_NAMES:
        return _TYPE_NAMES[t]
    if RSC_VENDOR_START <= t <= RSC_VENDOR_END:
        return f"vendor {t}"
    return f"unknown {t}"


def _check_byteorder(byteorder: str) -> str:
    if byteorder not in ("<", ">"):
        raise RprocError(errno.EINVAL, f"byteorder must be '<' or '>', not {byteorder!r}")
    return byteorder


# ---------------------------------------------------------------------------------------------
# Layouts: one declaration per kernel struct.


class StructLayout:
    """A packed C struct: ordered ``(field, struct code)`` pairs, no padding (``__packed``).

    A code that yields several values (``"2I"``, ``"2B"``) is an array field and reads as a tuple;
    ``"32s"`` is a char array and reads as bytes. Field offsets are computed once.
    """

    def __init__(self, name: str, fields: Sequence[tuple[str, str]]) -> None:
        self.name = name
        self.fields = tuple(fields)
        self._formats: dict[str, dict[str, struct.Struct]] = {"<": {}, ">": {}}
        self._whole: dict[str, struct.Struct] = {}
        self.offsets: dict[str, int] = {}
        pos = 0
        for field_name, code in self.fields:
            self.offsets[field_name] = pos
            for bo in ("<", ">"):
                self._formats[bo][field_name] = struct.Struct(bo + code)
            pos += self._formats["<"][field_name].size
        self.size = pos
        for bo in ("<", ">"):
            self._whole[bo] = struct.Struct(bo + "".join(code for _, code in self.fields))

    def field_size(self, field: str) -> int:
        return self._formats["<"][field].size

    def read(self, buf: memoryview, byteorder: str, field: str, base: int = 0) -> Any:
        """One field; the caller has checked that it lies inside ``buf``."""
        values = self._formats[byteorder][field].unpack_from(buf, base + self.offsets[field])
        return values[0] if len(values) == 1 else values

    def write(self, buf: memoryview, byteorder: str, field: str, value: Any, base: int = 0) -> None:
        fmt = self._formats[byteorder][field]
        args = tuple(value) if isinstance(value, tuple | list) else (value,)
        fmt.pack_into(buf, base + self.offsets[field], *args)

    def pack(self, byteorder: str, **values: Any) -> bytes:
        """The whole struct; every field must be given (array fields as tuples)."""
        args: list[Any] = []
        for field_name, _ in self.fields:
            value = values[field_name]
            if isinstance(value, tuple | list):
                args.extend(value)
            else:
                args.append(value)
        return self._whole[byteorder].pack(*args)


RESOURCE_TABLE = StructLayout(
    "resource_table", [("ver", "I"), ("num", "I"), ("reserved", "2I")]
)  # followed by u32 offset[num]
FW_RSC_HDR = StructLayout("fw_rsc_hdr", [("type", "I")])  # followed by the body
FW_RSC_CARVEOUT = StructLayout(
    "fw_rsc_carveout",
    [("da", "I"), ("pa", "I"), ("len", "I"), ("flags", "I"), ("reserved", "I"), ("name", "32s")],
)
FW_RSC_DEVMEM = StructLayout("fw_rsc_devmem", FW_RSC_CARVEOUT.fields)
FW_RSC_TRACE = StructLayout(
    "fw_rsc_trace", [("da", "I"), ("len", "I"), ("reserved", "I"), ("name", "32s")]
)
FW_RSC_VDEV_VRING = StructLayout(
    "fw_rsc_vdev_vring", [("da", "I"), ("align", "I"), ("num", "I"), ("notifyid", "I"), ("pa", "I")]
)
FW_RSC_VDEV = StructLayout(
    "fw_rsc_vdev",
    [
        ("id", "I"),
        ("notifyid", "I"),
        ("dfeatures", "I"),
        ("gfeatures", "I"),
        ("config_len", "I"),
        ("status", "B"),
        ("num_of_vrings", "B"),
        ("reserved", "2B"),
    ],
)  # followed by fw_rsc_vdev_vring vring[num_of_vrings] and config_len bytes of config space

TABLE_HDR_SIZE = RESOURCE_TABLE.size
RSC_HDR_SIZE = FW_RSC_HDR.size
CARVEOUT_SIZE = FW_RSC_CARVEOUT.size
DEVMEM_SIZE = FW_RSC_DEVMEM.size
TRACE_SIZE = FW_RSC_TRACE.size
VDEV_SIZE = FW_RSC_VDEV.size
VRING_SIZE = FW_RSC_VDEV_VRING.size
# offsets are signed ints in the walk (§5.3)
_OFFSET_FMT = {"<": struct.Struct("<i"), ">": struct.Struct(">i")}
_U32_FMT = {"<": struct.Struct("<I"), ">": struct.Struct(">I")}


def _as_view(buf: memoryview | bytearray | bytes) -> memoryview:
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view


def _fit(value: int, size: int, field: str) -> int:
    """Accept ``-1`` style values as the kernel's C assignments do (``notifyid = -1``)."""
    bits = size * 8
    if not isinstance(value, int) or not -(1 << (bits - 1)) <= value < (1 << bits):
        raise RprocError(errno.ERANGE, f"{field} value {value!r} does not fit u{bits}")
    return value & ((1 << bits) - 1)


def _s32(value: int) -> int:
    """``%d`` of a u32, as printf sees it."""
    return value - (1 << 32) if value & 0x80000000 else value


def _name_bytes(name: str | bytes) -> bytes:
    raw = name.encode() if isinstance(name, str) else bytes(name)
    if len(raw) > NAME_SIZE:
        raise RprocError(errno.EINVAL, f"name {name!r} longer than {NAME_SIZE} bytes")
    return raw.ljust(NAME_SIZE, b"\0")


def _name_text(raw: bytes) -> str:
    # The kernel prints and compares the raw bytes up to the NUL; undecodable bytes are shown
    # escaped rather than dropped, so two different names never render the same.
    return raw.split(b"\0", 1)[0].decode("utf-8", "backslashreplace")


# ---------------------------------------------------------------------------------------------
# The table header and the walk.


# eq=False: a writable memoryview cannot be hashed, so entries compare by identity.
@dataclass(frozen=True, eq=False)
class RawEntry:
    """One step of the §5.3 walk: the entry at ``offset`` (its ``fw_rsc_hdr``).

    ``body`` runs from ``offset + 4`` to the end of the table (``avail`` bytes), exactly what the
    kernel hands a handler; vendor entries are kept raw like this.
    """

    index: int
    offset: int
    type: int
    body: memoryview
    avail: int
    byteorder: str = "<"

    @property
    def body_offset(self) -> int:
        """The ``rsc_offset`` the kernel records: where the body starts in the table."""
        return self.offset + RSC_HDR_SIZE

    @property
    def type_name(self) -> str:
        return rsc_type_name(self.type)

    @property
    def is_vendor(self) -> bool:
        return RSC_VENDOR_START <= self.type <= RSC_VENDOR_END


class ResourceTable:
    """A live view of ``struct resource_table`` over a buffer of exactly ``table_sz`` bytes."""

    def __init__(self, view: memoryview | bytearray | bytes, byteorder: str = "<") -> None:
        self.view = _as_view(view)
        self.byteorder = _check_byteorder(byteorder)

    @property
    def size(self) -> int:
        return len(self.view)

    def _header(self, field: str) -> Any:
        if self.size < TABLE_HDR_SIZE:
            raise RprocError(errno.EINVAL, "header-less resource table", what="resource table")
        return RESOURCE_TABLE.read(self.view, self.byteorder, field)

    @property
    def ver(self) -> int:
        return int(self._header("ver"))

    @property
    def num(self) -> int:
        return int(self._header("num"))

    @property
    def reserved(self) -> tuple[int, int]:
        r = self._header("reserved")
        return (int(r[0]), int(r[1]))

    def validate(self) -> None:
        """The header checks of §4.4, in the kernel's order (section bounds are the ELF side's)."""
        what = "resource table"
        if self.size < TABLE_HDR_SIZE:
            raise RprocError(errno.EINVAL, "header-less resource table", what=what)
        if self.ver != 1:
            raise RprocError(errno.EINVAL, f"unsupported fw ver: {_s32(self.ver)}", what=what)
        if self.reserved != (0, 0):
            raise RprocError(errno.EINVAL, "non zero reserved bytes", what=what)
        if TABLE_HDR_SIZE + 4 * self.num > self.size:
            raise RprocError(errno.EINVAL, "resource table incomplete", what=what)

    def offset(self, i: int) -> int:
        """``offset[i]`` as the kernel's walk reads it: a signed int."""
        num = self.num
        if not 0 <= i < num:
            raise RprocError(
                errno.EINVAL, f"no entry {i} in a table of {num}", index=i, what="resource entry"
            )
        pos = TABLE_HDR_SIZE + 4 * i
        if pos + 4 > self.size:
            raise RprocError(
                errno.EINVAL, "resource table incomplete", index=i, what="resource entry"
            )
        return int(_OFFSET_FMT[self.byteorder].unpack_from(self.view, pos)[0])

    def offsets(self) -> list[int]:
        """Every offset the header declares; raises if the array runs past the table."""
        return [self.offset(i) for i in range(self.num)]

    def entry(self, i: int) -> RawEntry:
        """Entry ``i`` with the §5.3 bounds rule (and ours: never outside the view)."""
        offset = self.offset(i)
        avail = self.size - offset - RSC_HDR_SIZE
        if avail < 0 or offset < 0:
            raise RprocError(
                errno.EINVAL,
                "rsc table is truncated",
                index=i,
                offset=offset,
                what="resource entry",
            )
        rsc_type = int(_U32_FMT[self.byteorder].unpack_from(self.view, offset)[0])
        body = self.view[offset + RSC_HDR_SIZE :]
        return RawEntry(i, offset, rsc_type, body, avail, self.byteorder)

    def entries(self) -> Iterator[RawEntry]:
        """The §5.3 walk, lazily: entry ``i`` is read only after ``0..i-1`` were consumed, so a
        caller running handlers sees the kernel's side-effect order before an error."""
        for i in range(self.num):
            yield self.entry(i)

    def typed(self, *, check: bool = True) -> Iterator[Carveout | Devmem | Trace | Vdev | RawEntry]:
        """``entries()`` mapped through ``parse_entry``."""
        for raw in self.entries():
            yield parse_entry(raw, check=check)


# ---------------------------------------------------------------------------------------------
# Typed in-place views.


class _IntField:
    """A scalar field of the view's layout, read and written in place."""

    def __init__(self) -> None:
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _IntField: ...
    @overload
    def __get__(self, obj: _StructView, owner: type | None = None) -> int: ...
    def __get__(self, obj: _StructView | None, owner: type | None = None) -> _IntField | int:
        if obj is None:
            return self
        return int(obj._read(self.name))

    def __set__(self, obj: _StructView, value: int) -> None:
        size = obj.LAYOUT.field_size(self.name)
        obj._write(self.name, _fit(value, size, self.name))


class _StructView:
    """A struct laid over ``buf`` at ``base``; each field access checks that it is inside."""

    LAYOUT: ClassVar[StructLayout]
    KIND: ClassVar[str]

    def __init__(
        self,
        buf: memoryview,
        byteorder: str = "<",
        *,
        base: int = 0,
        index: int | None = None,
        offset: int | None = None,
        vring: int | None = None,
    ) -> None:
        self.buf = buf
        self.byteorder = _check_byteorder(byteorder)
        self.base = base
        self.index = index
        self.offset = offset
        self.vring_index = vring

    def _error(self, message: str, code: int = errno.EINVAL) -> RprocError:
        return RprocError(
            code,
            message,
            index=self.index,
            offset=self.offset,
            vring=self.vring_index,
            what="resource entry",
        )

    def _truncated(self) -> RprocError:
        return self._error(f"{self.KIND} rsc is truncated")

    def _need(self, end: int) -> None:
        if self.base + end > len(self.buf):
            raise self._truncated()

    def _read(self, field: str) -> Any:
        self._need(self.LAYOUT.offsets[field] + self.LAYOUT.field_size(field))
        return self.LAYOUT.read(self.buf, self.byteorder, field, self.base)

    def _write(self, field: str, value: Any) -> None:
        self._need(self.LAYOUT.offsets[field] + self.LAYOUT.field_size(field))
        if self.buf.readonly:
            raise self._error("resource table is read-only", errno.EROFS)
        self.LAYOUT.write(self.buf, self.byteorder, field, value, self.base)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.fields().items())
        return f"{type(self).__name__}(index={self.index}, offset={self.offset}, {shown})"

    @property
    def complete(self) -> bool:
        """Whether the fixed part of the struct lies inside the buffer."""
        return self.base + self.LAYOUT.size <= len(self.buf)

    def fields(self) -> dict[str, Any]:
        """Every scalar field that can be read (JSON-friendly); stops at the first that cannot."""
        out: dict[str, Any] = {}
        for field_name, _ in self.LAYOUT.fields:
            try:
                value = self._read(field_name)
            except RprocError:
                break
            if field_name == "name":
                out["name"] = _name_text(value)
            elif isinstance(value, tuple):
                out[field_name] = list(value)
            else:
                out[field_name] = value
        return out


class _EntryView(_StructView):
    """Common part of the typed entries: built from a ``RawEntry`` with the handler's checks."""

    @classmethod
    def at(
        cls,
        table: memoryview | bytearray,
        body_offset: int,
        byteorder: str = "<",
        *,
        index: int | None = None,
    ) -> Self:
        """The entry whose body starts at ``body_offset`` of ``table`` (the ``rsc_offset`` the
        core records), without checks: how the host finds an entry again to write back (§5.2)."""
        view = _as_view(table)
        if body_offset < RSC_HDR_SIZE or body_offset > len(view):
            raise RprocError(
                errno.EINVAL,
                f"{cls.KIND} rsc is truncated",
                index=index,
                offset=body_offset - RSC_HDR_SIZE,
                what="resource entry",
            )
        return cls(view[body_offset:], byteorder, index=index, offset=body_offset - RSC_HDR_SIZE)

    def _check_reserved(self) -> None:
        if self._read("reserved") != 0:
            raise self._error(f"{self.KIND} rsc has non zero reserved bytes")


class _Named(_EntryView):
    """Entries with a ``reserved`` u32 and a ``name[32]``: carveout, devmem, trace."""

    @classmethod
    def from_entry(cls, raw: RawEntry, byteorder: str | None = None, *, check: bool = True) -> Self:
        """Check as the handler does (§5.4): size against ``avail``, then the reserved word.

        ``check=False`` skips both for display tools; fields outside the table still raise.
        """
        view = cls(raw.body, byteorder or raw.byteorder, index=raw.index, offset=raw.offset)
        if check:
            if cls.LAYOUT.size > raw.avail:
                raise view._truncated()
            view._check_reserved()
        return view

    reserved = _IntField()

    @property
    def name_raw(self) -> bytes:
        return bytes(self._read("name"))

    @name_raw.setter
    def name_raw(self, value: bytes) -> None:
        self._write("name", _name_bytes(value))

    @property
    def name(self) -> str:
        """The name up to its NUL, within the 32 bytes."""
        return _name_text(self.name_raw)

    @name.setter
    def name(self, value: str) -> None:
        self._write("name", _name_bytes(value))


class Carveout(_Named):
    """``struct fw_rsc_carveout``; the host writes back ``da``, ``pa``, ``len`` (§5.2, §6.2)."""

    LAYOUT = FW_RSC_CARVEOUT
    KIND = "carveout"
    da = _IntField()
    pa = _IntField()
    len = _IntField()
    flags = _IntField()


class Devmem(_Named):
    """``struct fw_rsc_devmem``: the same layout as a carveout."""

    LAYOUT = FW_RSC_DEVMEM
    KIND = "devmem"
    da = _IntField()
    pa = _IntField()
    len = _IntField()
    flags = _IntField()


class Trace(_Named):
    """``struct fw_rsc_trace``."""

    LAYOUT = FW_RSC_TRACE
    KIND = "trace"
    da = _IntField()
    len = _IntField()


class Vring(_StructView):
    """``struct fw_rsc_vdev_vring`` inside a vdev entry; the host writes ``da`` and
    ``notifyid`` (§5.2). Truncation is reported as the vdev's."""

    LAYOUT = FW_RSC_VDEV_VRING
    KIND = "vdev"
    da = _IntField()
    align = _IntField()
    num = _IntField()
    notifyid = _IntField()
    pa = _IntField()


class Vdev(_EntryView):
    """``struct fw_rsc_vdev`` with its vrings and config space; the host writes ``gfeatures``,
    ``status``, the config space and the vrings' ``da``/``notifyid`` (§5.2)."""

    LAYOUT = FW_RSC_VDEV
    KIND = "vdev"
    id = _IntField()
    notifyid = _IntField()
    dfeatures = _IntField()
    gfeatures = _IntField()
    config_len = _IntField()
    status = _IntField()
    num_of_vrings = _IntField()

    @classmethod
    def from_entry(cls, raw: RawEntry, byteorder: str | None = None, *, check: bool = True) -> Vdev:
        """The checks of ``rproc_handle_vdev`` in its order (§5.4): size, reserved, vring count.

        The size rule is computed on Python ints, so it cannot overflow (the kernel's
        ``size_add``); the 24-byte fixed part is checked first so nothing is read outside.
        """
        view = cls(raw.body, byteorder or raw.byteorder, index=raw.index, offset=raw.offset)
        if check:
            if raw.avail < VDEV_SIZE or view.total_size > raw.avail:
                raise view._truncated()
            if view.reserved != (0, 0):
                raise view._error("vdev rsc has non zero reserved bytes")
            if view.num_of_vrings > RVDEV_NUM_VRINGS:
                raise view._error(f"too many vrings: {view.num_of_vrings}")
        return view

    @property
    def total_size(self) -> int:
        """``struct_size(rsc, vring, num_of_vrings) + config_len``."""
        return VDEV_SIZE + VRING_SIZE * self.num_of_vrings + self.config_len

    @property
    def reserved(self) -> tuple[int, int]:
        r = self._read("reserved")
        return (int(r[0]), int(r[1]))

    @reserved.setter
    def reserved(self, value: tuple[int, int]) -> None:
        self._write("reserved", tuple(_fit(v, 1, "reserved") for v in value))

    def vring(self, i: int) -> Vring:
        n = self.num_of_vrings
        if not 0 <= i < n:
            raise self._error(f"vring {i} out of range: num_of_vrings {n}")
        vring = Vring(
            self.buf,
            self.byteorder,
            base=self.base + VDEV_SIZE + VRING_SIZE * i,
            index=self.index,
            offset=self.offset,
            vring=i,
        )
        if not vring.complete:
            raise self._truncated()
        return vring

    @property
    def vrings(self) -> list[Vring]:
        return [self.vring(i) for i in range(self.num_of_vrings)]

    @property
    def config_offset(self) -> int:
        """Offset of the config space from the body start."""
        return VDEV_SIZE + VRING_SIZE * self.num_of_vrings

    @property
    def config(self) -> memoryview:
        """The virtio config space, a writable window on the table."""
        start = self.base + self.config_offset
        end = start + self.config_len
        if end > len(self.buf):
            raise self._truncated()
        return self.buf[start:end]

    def fields(self) -> dict[str, Any]:
        out = super().fields()
        try:
            out["vrings"] = [v.fields() for v in self.vrings]
            out["config"] = bytes(self.config).hex()
        except RprocError:
            pass
        return out


def parse_entry(
    raw: RawEntry, byteorder: str | None = None, *, check: bool = True
) -> Carveout | Devmem | Trace | Vdev | RawEntry:
    """The typed view for a known type; vendor and unknown entries come back raw."""
    kinds: dict[int, type[Carveout] | type[Devmem] | type[Trace] | type[Vdev]] = {
        RSC_CARVEOUT: Carveout,
        RSC_DEVMEM: Devmem,
        RSC_TRACE: Trace,
        RSC_VDEV: Vdev,
    }
    kind = kinds.get(raw.type)
    if kind is None:
        return raw
    return kind.from_entry(raw, byteorder, check=check)


# ---------------------------------------------------------------------------------------------
# Building (tests and simulated firmware).


class TableBuilder:
    """Assemble a resource table from entries, packed back to back as C ``__packed`` structs.

    ``offset_slots`` declares the offsets array larger than ``num`` (real images reserve e.g. 8
    slots, so the first entry sits at 0x30); unused slots are zero.
    """

    def __init__(self, byteorder: str = "<", offset_slots: int | None = None) -> None:
        self.byteorder = _check_byteorder(byteorder)
        self.offset_slots = offset_slots
        self._entries: list[tuple[int, bytes]] = []

    def _add(self, rsc_type: int, body: bytes) -> int:
        self._entries.append((_fit(rsc_type, 4, "type"), body))
        return len(self._entries) - 1

    def _pack(self, layout: StructLayout, **values: Any) -> bytes:
        try:
            return layout.pack(self.byteorder, **values)
        except struct.error as exc:
            raise RprocError(errno.ERANGE, f"{layout.name}: {exc}") from None

    def add_carveout(
        self, da: int, pa: int, len: int, flags: int = 0, name: str = "", reserved: int = 0
    ) -> int:
        """Returns the entry's index."""
        body = self._pack(
            FW_RSC_CARVEOUT,
            da=da,
            pa=pa,
            len=len,
            flags=flags,
            reserved=reserved,
            name=_name_bytes(name),
        )
        return self._add(RSC_CARVEOUT, body)

    def add_devmem(
        self, da: int, pa: int, len: int, flags: int = 0, name: str = "", reserved: int = 0
    ) -> int:
        body = self._pack(
            FW_RSC_DEVMEM,
            da=da,
            pa=pa,
            len=len,
            flags=flags,
            reserved=reserved,
            name=_name_bytes(name),
        )
        return self._add(RSC_DEVMEM, body)

    def add_trace(self, da: int, len: int, name: str = "", reserved: int = 0) -> int:
        body = self._pack(FW_RSC_TRACE, da=da, len=len, reserved=reserved, name=_name_bytes(name))
        return self._add(RSC_TRACE, body)

    def add_vdev(
        self,
        id: int,
        notifyid: int,
        dfeatures: int,
        gfeatures: int = 0,
        config: bytes = b"",
        status: int = 0,
        vrings: Sequence[tuple[int, int, int, int, int]] = (),
        reserved: tuple[int, int] = (0, 0),
        *,
        config_len: int | None = None,
        num_of_vrings: int | None = None,
    ) -> int:
        """``vrings`` are ``(da, align, num, notifyid, pa)``. ``config_len`` and
        ``num_of_vrings`` override the counts written in the header (to craft broken tables)."""
        head = self._pack(
            FW_RSC_VDEV,
            id=id,
            notifyid=notifyid,
            dfeatures=dfeatures,
            gfeatures=gfeatures,
            config_len=len(config) if config_len is None else config_len,
            status=status,
            num_of_vrings=len(vrings) if num_of_vrings is None else num_of_vrings,
            reserved=tuple(reserved),
        )
        rings = b"".join(
            self._pack(FW_RSC_VDEV_VRING, da=da, align=align, num=num, notifyid=nid, pa=pa)
            for da, align, num, nid, pa in vrings
        )
        return self._add(RSC_VDEV, head + rings + bytes(config))

    def add_vendor(self, type: int, body: bytes) -> int:
        if not RSC_VENDOR_START <= type <= RSC_VENDOR_END:
            raise RprocError(errno.EINVAL, f"vendor resource type {type} outside 128..512")
        return self._add(type, bytes(body))

    def add_raw(self, type: int, body: bytes) -> int:
        """Any type with any body: for unknown types and deliberately broken entries."""
        return self._add(type, bytes(body))

    def _slots(self) -> int:
        slots = len(self._entries) if self.offset_slots is None else self.offset_slots
        if slots < len(self._entries):
            raise RprocError(errno.EINVAL, f"offset_slots {slots} < {len(self._entries)} entries")
        return slots

    def entry_offsets(self) -> list[int]:
        """Where each entry's ``fw_rsc_hdr`` lands in the built table."""
        pos = TABLE_HDR_SIZE + 4 * self._slots()
        out = []
        for _, body in self._entries:
            out.append(pos)
            pos += RSC_HDR_SIZE + len(body)
        return out

    def build(
        self, ver: int = 1, reserved: tuple[int, int] = (0, 0), *, num: int | None = None
    ) -> bytearray:
        """The table bytes. ``num`` overrides the entry count written in the header."""
        offsets = self.entry_offsets()
        slots = self._slots()
        count = len(self._entries) if num is None else num
        out = bytearray(self._pack(RESOURCE_TABLE, ver=ver, num=count, reserved=tuple(reserved)))
        off_fmt = _U32_FMT[self.byteorder]
        for i in range(slots):
            out += off_fmt.pack(offsets[i] if i < len(offsets) else 0)
        for rsc_type, body in self._entries:
            out += self._pack(FW_RSC_HDR, type=rsc_type) + body
        return out


# ---------------------------------------------------------------------------------------------
# Presentation: the debugfs dump (§2.2) and a JSON description.

# What ``%pK`` prints for a reader without CAP_SYSLOG when kptr_restrict is set: a zero pointer.
# We never expose a host address, so every reader gets this.
_PK_HIDDEN = "0000000000000000"


def format_resource_table(view: memoryview | bytearray | bytes | None, byteorder: str = "<") -> str:
    """The debugfs ``resource_table`` file (§2.2); never raises on a broken table.

    The kernel dumps a table it validated at load time and does not check sizes; we render up to
    the first field outside the buffer and end with a line that says why the dump stopped.
    """
    if view is None:
        return "No resource table found\n"
    table = ResourceTable(view, byteorder)
    out: list[str] = []
    if table.size < TABLE_HDR_SIZE:
        return f"Resource table of {table.size} bytes has no complete header; dump stopped\n"
    for i in range(table.num):
        try:
            raw = table.entry(i)
        except RprocError as exc:
            where = f" at offset {exc.offset}" if exc.offset is not None else ""
            out.append(f"Entry {i}{where}: {exc.message}; dump stopped\n")
            break
        try:
            _format_entry(out, raw)
        except RprocError:
            out.append("  (the table ends inside this entry; dump stopped)\n")
            break
    return "".join(out)


def _format_entry(out: list[str], raw: RawEntry) -> None:
    """Append entry lines one at a time, so a field outside the table stops after the last one
    that could be read."""
    i = raw.index
    if raw.type in (RSC_CARVEOUT, RSC_DEVMEM):
        c = parse_entry(raw, check=False)
        assert isinstance(c, Carveout | Devmem)
        out.append(f"Entry {i} is of type {rsc_type_name(raw.type)}\n")
        out.append(f"  Device Address 0x{c.da:x}\n")
        out.append(f"  Physical Address 0x{c.pa:x}\n")
        out.append(f"  Length 0x{c.len:x} Bytes\n")
        out.append(f"  Flags 0x{c.flags:x}\n")
        out.append(f"  Reserved (should be zero) [{_s32(c.reserved)}]\n")
        out.append(f"  Name {c.name}\n\n")
    elif raw.type == RSC_TRACE:
        t = Trace.from_entry(raw, check=False)
        out.append(f"Entry {i} is of type trace\n")
        out.append(f"  Device Address 0x{t.da:x}\n")
        out.append(f"  Length 0x{t.len:x} Bytes\n")
        out.append(f"  Reserved (should be zero) [{_s32(t.reserved)}]\n")
        out.append(f"  Name {t.name}\n\n")
    elif raw.type == RSC_VDEV:
        v = Vdev.from_entry(raw, check=False)
        out.append(f"Entry {i} is of type vdev\n")
        out.append(f"  ID {_s32(v.id)}\n")
        out.append(f"  Notify ID {_s32(v.notifyid)}\n")
        out.append(f"  Device features 0x{v.dfeatures:x}\n")
        out.append(f"  Guest features 0x{v.gfeatures:x}\n")
        out.append(f"  Config length 0x{v.config_len:x}\n")
        out.append(f"  Status 0x{v.status:x}\n")
        out.append(f"  Number of vrings {v.num_of_vrings}\n")
        r0, r1 = v.reserved
        out.append(f"  Reserved (should be zero) [{r0}][{r1}]\n\n")
        # Like the kernel, every declared vring is shown, even beyond RVDEV_NUM_VRINGS.
        for j in range(v.num_of_vrings):
            vr = v.vring(j)
            out.append(f"  Vring {j}\n")
            out.append(f"    Device Address 0x{vr.da:x}\n")
            out.append(f"    Alignment {_s32(vr.align)}\n")
            out.append(f"    Number of buffers {_s32(vr.num)}\n")
            out.append(f"    Notify ID {_s32(vr.notifyid)}\n")
            out.append(f"    Physical Address 0x{vr.pa:x}\n\n")
    else:
        out.append(f"Unknown resource type found: {_s32(raw.type)} [hdr: {_PK_HIDDEN}]\n")


def describe_table(
    view: memoryview | bytearray | bytes | None, byteorder: str = "<"
) -> dict[str, Any]:
    """A JSON-friendly description for ``rproc fw info --json``; never raises on bad tables.

    Table-level problems go in ``"error"``; each entry carries its own ``"error"`` when it fails
    the handler's checks, and still lists every field that can be read. Unlike the kernel's walk,
    an entry that fails does not hide the entries after it.
    """
    if view is None:
        return {"present": False}
    table = ResourceTable(view, byteorder)
    desc: dict[str, Any] = {
        "present": True,
        "byteorder": "little" if byteorder == "<" else "big",
        "size": table.size,
    }
    try:
        table.validate()
    except RprocError as exc:
        desc["error"] = exc.message
    if table.size < TABLE_HDR_SIZE:
        return desc
    desc["version"] = table.ver
    desc["num"] = table.num
    desc["reserved"] = list(table.reserved)
    offsets: list[int] = []
    for i in range(table.num):
        try:
            offsets.append(table.offset(i))
        except RprocError:
            break
    desc["offsets"] = offsets
    # A vendor body has no size of its own: show the bytes up to the next entry (or the end).
    starts = sorted({o for o in offsets if 0 <= o < table.size} | {table.size})
    entries: list[dict[str, Any]] = []
    for i, offset in enumerate(offsets):
        item: dict[str, Any] = {"index": i, "offset": offset}
        try:
            raw = table.entry(i)
        except RprocError as exc:
            item["error"] = exc.message
            entries.append(item)
            continue
        item["type"] = raw.type
        item["type_name"] = raw.type_name
        item["avail"] = raw.avail
        try:
            typed = parse_entry(raw, check=False)
            if isinstance(typed, RawEntry):
                end = next(s for s in starts if s > offset)
                item["data"] = bytes(table.view[raw.body_offset : max(end, raw.body_offset)]).hex()
            else:
                item.update(typed.fields())
            if raw.type < RSC_LAST:
                parse_entry(raw, check=True)
        except RprocError as exc:
            item["error"] = exc.message
        entries.append(item)
    desc["entries"] = entries
    return desc
