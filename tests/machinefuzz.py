"""The machine-file fuzzing harness shared by tests/test_fuzz_parsers.py (a bounded budget in CI)
and tools/fuzz.sh (long runs): mutations of the bundled machine descriptions (their TOML text,
their parsed tables re-written, their SVD file) and random bytes, through ``load_machine_spec``
and the construction of every core's peripheral bus (the coded, register-file and SVD models).

Invariants checked per case (issue 13):
- loading either returns a ``MachineSpec`` or raises ``RprocError`` with a kernel errno whose
  message names the file (``machine.toml: ...``); nothing else escapes;
- a spec the parser accepts builds: ``EmulatorPlatform(spec)`` (memories, every core's emulator
  and peripheral models, the SoC's host driver) raises nothing; whatever the parser lets
  through, the models take;
- the loader reads the one file it is given (and the SVD it names) and writes nothing.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from fuzzkit import mutate_bytes, pick
from hypothesis import strategies as st

from remoteproc.errors import RprocError
from remoteproc.platforms.emulator.machine import MACHINES_DIR, MachineSpec, load_machine_spec
from remoteproc.platforms.emulator.peripherals import svd as svd_module
from remoteproc.platforms.emulator.platform import EmulatorPlatform

SEEDS = {p.name: p.read_text() for p in sorted(MACHINES_DIR.glob("*.toml"))}
SVD_SEED = (MACHINES_DIR / "stm32mp15.svd").read_text()
SEED_DOCS = {name: tomllib.loads(text) for name, text in SEEDS.items()}


# -- a small TOML writer (the standard library reads TOML but does not write it) -------------


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v) if v >= 0 else f"-{-v}"
    if isinstance(v, float):
        return repr(v) if v == v and v not in (float("inf"), float("-inf")) else "nan"
    if isinstance(v, str):
        return json.dumps(v)  # JSON's escapes are TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dump_toml(doc: dict[str, Any]) -> str:
    """Top-level scalars, then ``[table]``s, then ``[[array]]``s of tables (values inline)."""
    out: list[str] = []
    for k, v in doc.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v
                                            and all(isinstance(x, dict) for x in v)):
            out.append(f"{json.dumps(k)} = {_value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            out.append(f"[{json.dumps(k)}]")
            out += [f"{json.dumps(kk)} = {_value(vv)}" for kk, vv in v.items()]
    for k, v in doc.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for t in v:
                out.append(f"[[{json.dumps(k)}]]")
                out += [f"{json.dumps(kk)} = {_value(vv)}" for kk, vv in t.items()]
    return "\n".join(out) + "\n"


# -- generators ---------------------------------------------------------------------------------

_EDGE_INTS = [0, 1, 3, 4, 0x1000, 0xFFF, 0x4000_0000, 0xE000_E000, 0x8000_0000, 0xFFFF_F000,
              0xFFFF_FFFF, 1 << 32, (1 << 64) - 1, 1 << 64, -1, 240, 16, 17, 64, 65]


def _scalar() -> st.SearchStrategy[Any]:
    return st.one_of(
        pick(_EDGE_INTS), st.integers(-(1 << 70), 1 << 70), st.booleans(),
        pick(["", "x", "a/b", "a b", "\0", "\n", "m4", "cortex-m4", "regfile", "svd",
                         "stm32-ipcc", "vsoc", "auto", "preloaded", "../../etc/passwd",
                         "/dev/zero", "stm32mp15.svd", "x" * 300, "\u00ff\u2028"]),
        st.text(max_size=8), st.floats(allow_nan=True), st.just([]), st.just({}),
        st.lists(st.integers(0, 0x1_0000), max_size=3),
    )


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path into the document (dict keys and list indices)."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _copy(v: Any) -> Any:
    return json.loads(json.dumps(v))


_SEED_NAMES = sorted(SEEDS)
_SCALAR = _scalar()
_EDGE = pick(_EDGE_INTS)
_TABLE_OPS = pick(["set", "set", "set", "drop", "add", "dup"])
_TEXT_OPS = pick(["drop", "dup", "number", "number", "cut"])
_ADDED_KEYS = pick(["extra", "params", "svd", "cores", "aliases", "pa", "reserved",
                               "clock_hz", "registers"])


@st.composite
def table_mutations(draw: st.DrawFn) -> str:
    """A bundled machine parsed, a few values replaced, keys dropped or added, re-written."""
    doc = _copy(SEED_DOCS[_SEED_NAMES[draw(st.integers(0, len(_SEED_NAMES) - 1))]])
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(doc)
        if not paths:
            break
        # An index, not sampled_from(paths): a new strategy per draw costs more than the case.
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        op = draw(_TABLE_OPS)
        if op == "set":
            parent[key] = draw(_SCALAR)
        elif op == "drop":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(_ADDED_KEYS)] = draw(_SCALAR)
        elif op == "dup" and isinstance(parent, list):
            parent.append(_copy(parent[key]))
    return dump_toml(doc)


@st.composite
def text_mutations(draw: st.DrawFn) -> bytes:
    """A bundled machine's text with lines dropped or repeated, numbers replaced, bytes flipped."""
    lines = SEEDS[_SEED_NAMES[draw(st.integers(0, len(_SEED_NAMES) - 1))]].splitlines(
        keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(_TEXT_OPS)
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "number":
            lines[i] = re.sub(r"0x[0-9A-Fa-f_]+|\b\d+\b",
                              lambda m: hex(draw(_EDGE) & ((1 << 64) - 1)),
                              lines[i], count=1)
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    data = bytearray("".join(lines).encode())
    for _ in range(draw(st.integers(0, 2))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def svd_mutations(draw: st.DrawFn) -> tuple[str, str]:
    """The stm32mp157 machine with its SVD file cut, its numbers or names changed."""
    text = SVD_SEED
    op = draw(pick(["cut", "number", "name", "garbage"]))
    if op == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif op == "number":
        hits = list(re.finditer(r"0x[0-9A-Fa-f]+", text))
        m = hits[draw(st.integers(0, len(hits) - 1))]  # hits: the seed's, the same every time
        text = text[: m.start()] + draw(pick(
            ["-1", "0xFFFFFFFFFFFFFFFFFF", "zz", "", "1e9", "0x"])) + text[m.end():]
    elif op == "name":
        text = text.replace("<name>USART3</name>", draw(pick(
            ["<name></name>", "<name>USART2</name>", "", "<name>&bad;</name>"])), 1)
    else:
        text = draw(st.text(max_size=64))
    return SEEDS["stm32mp157.toml"], text


MACHINES = st.one_of(
    table_mutations().map(lambda t: (t.encode(), None)),
    table_mutations().map(lambda t: (t.encode(), None)),
    text_mutations().map(lambda b: (b, None)),
    svd_mutations().map(lambda p: (p[0].encode(), p[1])),
    st.binary(max_size=256).map(lambda b: (b, None)),
)


# -- the harness ----------------------------------------------------------------------------------


class MachineHarness:
    """A scratch folder holding the case's ``machine.toml`` (and ``stm32mp15.svd``);
    ``run(toml, svd)`` checks one case."""

    def __init__(self) -> None:
        # /dev/shm when there is one: a case writes one or two files and reads them back
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self.dir = Path(tempfile.mkdtemp(prefix="machinefuzz-", dir=shm))
        self._svd: str | None = None  # what the folder's SVD holds now
        self.cases = 0
        self.accepted = 0

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def run(self, data: bytes, svd: str | None) -> MachineSpec | None:
        self.cases += 1
        path = self.dir / "machine.toml"
        path.write_bytes(data)
        svd_path = self.dir / "stm32mp15.svd"
        want = SVD_SEED if svd is None else svd
        if want != self._svd:
            svd_path.write_text(want)
            self._svd = want
            svd_module._cache.pop(str(svd_path.resolve()), None)  # the case's SVD, not the last
        before = sorted(os.listdir(self.dir))
        try:
            spec = load_machine_spec(path)
        except RprocError as exc:
            assert exc.errno in (errno.EINVAL, errno.ENOENT), exc
            assert str(exc).startswith("machine.toml: "), str(exc)
            return None
        finally:
            assert sorted(os.listdir(self.dir)) == before
        self.accepted += 1
        # The platform itself: memories, every core's emulator and peripheral bus, the SoC's
        # host driver. Whatever the parser accepted must build.
        EmulatorPlatform(spec).close()
        return spec


_NUMBER = re.compile(rb"0x[0-9A-Fa-f_]+|\b\d+\b")


def mutate(case: tuple[bytes, str | None], rng: random.Random) -> tuple[bytes, str | None]:
    """A cheap mutant of a case for the long runs: a number of the file replaced by an edge
    value (most of them), or a byte-level mutation."""
    data, svd = case
    hits = list(_NUMBER.finditer(data)) if rng.random() < 0.7 else []
    if hits:
        m = rng.choice(hits)
        value = rng.choice(_EDGE_INTS) & ((1 << 64) - 1)
        return data[: m.start()] + hex(value).encode() + data[m.end():], svd
    return mutate_bytes(data, rng), svd
