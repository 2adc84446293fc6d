"""``rproc fw map``: a picture of a firmware image's device address space.

Rules:
- ``build_map`` gathers the regions (PT_LOAD segments at ``p_paddr``, the resource table, trace
  buffers, fixed-address carveouts, devmem and vrings) from the image alone; ``layout`` turns them
  into drawing primitives; ``render`` writes those as SVG (no dependency) or PNG (Pillow, imported
  only then). One layout serves both formats, so they always agree.
- To scale where it fits: addresses that lie close together form a cluster drawn to scale;
  far-apart clusters are separated by a broken-axis band that states the gap. Inside a cluster a
  region too small to label is stretched to a minimum height and drawn hatched, so the picture
  never lies silently about size.
- Regions that overlap (a trace buffer inside a data segment) are drawn in lanes beside the
  segments they sit in.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from remoteproc.errors import RprocError
from remoteproc.firmware import elf
from remoteproc.firmware import rsc_table as rt

COLOURS = {
    "segment": "#cfe2f3",
    "rsc_table": "#f9cb9c",
    "trace": "#b6d7a8",
    "carveout": "#d9d2e9",
    "devmem": "#ead1dc",
    "vring": "#ffe599",
}
KIND_LABELS = {
    "segment": "PT_LOAD segment",
    "rsc_table": "resource table",
    "trace": "trace buffer",
    "carveout": "fixed carveout",
    "devmem": "devmem",
    "vring": "fixed vring",
}


@dataclass(frozen=True)
class Region:
    kind: str
    start: int
    size: int
    label: str

    @property
    def end(self) -> int:
        return self.start + max(self.size, 1)


@dataclass
class MemoryMap:
    file: str
    regions: list[Region] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _vring_bytes(num: int, align: int) -> int:
    if not num or not align:
        return 0
    used = (16 * num + 2 * (3 + num) + align - 1) // align * align
    return used + 6 + 8 * num


def build_map(fw: elf.Firmware) -> MemoryMap:
    """Every region the image places in device memory; problems become notes, never errors."""
    memory_map = MemoryMap(fw.path or fw.name)
    try:
        image = elf.sanity_check(fw.data, file=fw.name)
    except RprocError as exc:
        memory_map.notes.append(str(exc))
        return memory_map
    for seg in image.segments:
        if seg.type != 1 or seg.memsz == 0:
            continue
        flags = "".join(c for c, b in (("R", 4), ("W", 2), ("X", 1)) if seg.flags & b)
        memory_map.regions.append(
            Region("segment", seg.paddr, seg.memsz, f"LOAD {seg.index} {flags} {seg.memsz:#x}")
        )
    section = next((s for s in image.sections if s.name == ".resource_table"), None)
    if section is None:
        memory_map.notes.append("no .resource_table section")
        return memory_map
    memory_map.regions.append(
        Region("rsc_table", section.addr, section.size, f".resource_table {section.size:#x}")
    )
    end = section.offset + section.size
    if end > fw.size:
        memory_map.notes.append("resource table truncated")
        return memory_map
    table = rt.ResourceTable(memoryview(bytes(fw.data[section.offset : end])), image.byteorder)
    try:
        table.validate()
        entries = list(table.typed(check=False))
    except RprocError as exc:
        memory_map.notes.append(str(exc))
        return memory_map
    traces = 0  # debugfs numbers trace files in table order: trace0, trace1, ...
    for i, entry in enumerate(entries):
        # Entries are views checked lazily: a field past the table's end raises when read.
        try:
            traces += _add_entry(memory_map, i, entry, traces)
        except RprocError as exc:
            memory_map.notes.append(f"entry {i}: {exc.message}")
    return memory_map


def _add_entry(memory_map: MemoryMap, i: int, entry: object, traces: int) -> int:
    """The regions of one typed entry; returns 1 for a trace buffer (they are numbered)."""
    if isinstance(entry, rt.Trace):
        memory_map.regions.append(
            Region("trace", entry.da, entry.len, f"trace{traces} {entry.name} {entry.len:#x}")
        )
        return 1
    if isinstance(entry, (rt.Carveout, rt.Devmem)):
        kind = "devmem" if isinstance(entry, rt.Devmem) else "carveout"
        if entry.da == rt.FW_RSC_ADDR_ANY:
            memory_map.notes.append(
                f"entry {i}: {kind} {entry.name!r} {entry.len:#x} bytes at any address "
                "(the host chooses)"
            )
        else:
            memory_map.regions.append(
                Region(kind, entry.da, entry.len, f"{kind} {entry.name} {entry.len:#x}")
            )
    elif isinstance(entry, rt.Vdev):
        for v, ring in enumerate(entry.vrings):
            size = _vring_bytes(ring.num, ring.align)
            if ring.da == rt.FW_RSC_ADDR_ANY:
                memory_map.notes.append(
                    f"entry {i}: vdev vring{v} ({ring.num} x {ring.align}) at any address"
                )
            else:
                memory_map.regions.append(
                    Region("vring", ring.da, size, f"vdev vring{v} num {ring.num}")
                )
    return 0


# -- layout ------------------------------------------------------------------------------------

WIDTH = 960
ADDR_X = 12
SEG_X, SEG_W = 150, 330
LANE_X, LANE_W = 500, 200
MIN_H = 22.0
CLUSTER_H = 360.0
BREAK_H = 34.0
TOP = 60.0


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    hatched: bool = False


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    text: str
    size: int = 12
    anchor: str = "start"


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    dashed: bool = False


@dataclass
class Drawing:
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def _clusters(regions: list[Region]) -> list[list[Region]]:
    ordered = sorted(regions, key=lambda r: (r.start, -r.size))
    clusters: list[list[Region]] = []
    lo = hi = 0
    for region in ordered:
        if clusters:
            gap = region.start - hi
            if gap <= max(0x10000, (hi - lo) // 2):
                clusters[-1].append(region)
                hi = max(hi, region.end)
                continue
        clusters.append([region])
        lo, hi = region.start, region.end
    return clusters


def _scale(cluster: list[Region]) -> tuple[list[int], list[float], list[bool], list[bool]]:
    """Boundaries in the cluster, the y of each, whether each interval was stretched, and
    whether it is empty (covered by no region: drawn as a short gap band, not to scale)."""
    bounds = sorted({r.start for r in cluster} | {r.end for r in cluster})
    pairs = list(itertools.pairwise(bounds))
    empty = [not any(r.start <= a and b <= r.end for r in cluster) for a, b in pairs]
    covered = sum(b - a for (a, b), e in zip(pairs, empty, strict=True) if not e)
    per_byte = CLUSTER_H / covered if covered else 1.0
    ys = [0.0]
    stretched: list[bool] = []
    for (a, b), is_empty in zip(pairs, empty, strict=True):
        h = BREAK_H * 0.6 if is_empty else (b - a) * per_byte
        stretched.append(not is_empty and h < MIN_H)
        ys.append(ys[-1] + max(h, MIN_H))
    return bounds, ys, stretched, empty


def layout(memory_map: MemoryMap) -> Drawing:
    texts: list[Text] = [Text(ADDR_X, 28, f"Device address space of {memory_map.file}", 16)]
    rects: list[Rect] = []
    lines: list[Line] = []
    y0 = TOP
    clusters = _clusters(memory_map.regions)
    for ci, cluster in enumerate(clusters):
        bounds, ys, stretched, empty = _scale(cluster)

        def y_of(
            addr: int, bounds: list[int] = bounds, ys: list[float] = ys, base: float = y0
        ) -> float:
            return base + ys[bounds.index(addr)]

        lanes: list[int] = []  # end address of the last region in each lane
        for region in sorted(cluster, key=lambda r: (r.start, -r.size)):
            top, bottom = y_of(region.start), y_of(region.end)
            if region.kind == "segment":
                x, w = SEG_X, SEG_W
            else:
                lane = next((i for i, end in enumerate(lanes) if end <= region.start), None)
                if lane is None:
                    lanes.append(region.end)
                    lane = len(lanes) - 1
                else:
                    lanes[lane] = region.end
                x, w = LANE_X + lane * (LANE_W + 10), LANE_W
                lines.append(Line(SEG_X + SEG_W, top, x, top, dashed=True))
            rects.append(Rect(x, top, w, bottom - top, COLOURS[region.kind]))
            # hatch exactly the stretches drawn larger than their size
            for k in range(bounds.index(region.start), bounds.index(region.end)):
                if stretched[k]:
                    y_a, y_b = y_of(bounds[k]), y_of(bounds[k + 1])
                    rects.append(Rect(x, y_a, w, y_b - y_a, "", hatched=True))
            texts.append(Text(x + 6, top + 15, region.label, 12))
        for k, is_empty in enumerate(empty):
            if is_empty:
                mid = (y_of(bounds[k]) + y_of(bounds[k + 1])) / 2
                gap = bounds[k + 1] - bounds[k]
                label = f"unused {_human(gap)}"
                texts.append(Text(SEG_X + SEG_W / 2, mid + 4, label, 11, "middle"))
        for addr in bounds:
            texts.append(Text(ADDR_X, y_of(addr) + 4, f"0x{addr:08x}", 12))
            lines.append(Line(ADDR_X + 92, y_of(addr), SEG_X, y_of(addr)))
        y0 += ys[-1]
        if ci + 1 < len(clusters):
            gap = clusters[ci + 1][0].start - max(r.end for r in cluster)
            mid = y0 + BREAK_H / 2
            lines.append(Line(SEG_X, mid - 6, SEG_X + SEG_W, mid - 6, dashed=True))
            lines.append(Line(SEG_X, mid + 6, SEG_X + SEG_W, mid + 6, dashed=True))
            texts.append(Text(SEG_X + SEG_W / 2, mid + 4, f"gap of {_human(gap)}", 11, "middle"))
            y0 += BREAK_H
    width = max(
        WIDTH,
        int(max((r.x + r.w for r in rects), default=WIDTH - 20)) + 20,
    )
    # legend and notes
    y = y0 + 30
    x = ADDR_X
    for kind, label in KIND_LABELS.items():
        rects.append(Rect(x, y - 11, 14, 14, COLOURS[kind]))
        texts.append(Text(x + 20, y, label, 12))
        x += 40 + 7 * len(label)
    rects.append(Rect(x, y - 11, 14, 14, "#ffffff"))
    rects.append(Rect(x, y - 11, 14, 14, "", hatched=True))
    texts.append(Text(x + 20, y, "stretched to be readable (not to scale)", 12))
    y += 26
    for note in memory_map.notes:
        texts.append(Text(ADDR_X, y, note, 12))
        y += 18
    if not memory_map.regions:
        texts.append(Text(ADDR_X, y, "nothing is placed in device memory", 12))
        y += 18
    return Drawing(width, math.ceil(y + 10), rects, texts, lines)


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n:#x})"
    return f"{n} bytes"


# -- output ------------------------------------------------------------------------------------


def to_svg(drawing: Drawing) -> str:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{drawing.width}" '
        f'height="{drawing.height}" font-family="monospace">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#888" '
        'stroke-width="1"/></pattern></defs>',
        f'<rect width="{drawing.width}" height="{drawing.height}" fill="white"/>',
    ]
    for r in drawing.rects:
        if r.fill:
            out.append(
                f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{r.h:.1f}" '
                f'fill="{r.fill}" stroke="#333"/>'
            )
        if r.hatched:
            out.append(
                f'<rect x="{r.x:.1f}" y="{r.y:.1f}" width="{r.w:.1f}" height="{r.h:.1f}" '
                'fill="url(#hatch)" stroke="none"/>'
            )
    for ln in drawing.lines:
        dash = ' stroke-dasharray="4,3"' if ln.dashed else ""
        out.append(
            f'<line x1="{ln.x1:.1f}" y1="{ln.y1:.1f}" x2="{ln.x2:.1f}" y2="{ln.y2:.1f}" '
            f'stroke="#666"{dash}/>'
        )
    for t in drawing.texts:
        out.append(
            f'<text x="{t.x:.1f}" y="{t.y:.1f}" font-size="{t.size}" '
            f'text-anchor="{t.anchor}">{escape(t.text)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def to_png(drawing: Drawing, path: str) -> None:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (drawing.width, drawing.height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for r in drawing.rects:
        box = (r.x, r.y, r.x + r.w, r.y + max(r.h, 1))
        if r.fill:
            draw.rectangle(box, fill=r.fill, outline="#333333")
        if r.hatched:
            step = 6
            x = r.x - r.h
            while x < r.x + r.w:
                x0, y0, x1, y1 = x, r.y + r.h, x + r.h, r.y
                # clip the diagonal to the box
                if x0 < r.x:
                    y0 -= r.x - x0
                    x0 = r.x
                if x1 > r.x + r.w:
                    y1 += x1 - (r.x + r.w)
                    x1 = r.x + r.w
                if x1 > x0:
                    draw.line((x0, y0, x1, y1), fill="#888888")
                x += step
    for ln in drawing.lines:
        draw.line((ln.x1, ln.y1, ln.x2, ln.y2), fill="#666666")
    for t in drawing.texts:
        anchor = "ms" if t.anchor == "middle" else "ls"
        draw.text((t.x, t.y), t.text, fill="black", font=font, anchor=anchor)
    img.save(path, format="PNG")


def render(memory_map: MemoryMap, path: str) -> None:
    """Write the picture; the format follows the file name (.svg or .png)."""
    suffix = Path(path).suffix.lower()
    drawing = layout(memory_map)
    if suffix == ".svg":
        Path(path).write_text(to_svg(drawing))
    elif suffix == ".png":
        to_png(drawing, path)
    else:
        raise ValueError(f"{path}: unknown picture format {suffix!r}; use .svg or .png")
