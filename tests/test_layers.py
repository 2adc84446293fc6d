"""The import structure of ``remoteproc``: no circles between modules, and the layer contracts of
pyproject.toml ([tool.importlinter]) kept.

The graph is grimp's (import-linter's engine), built without ``if TYPE_CHECKING:`` imports:
those are annotations, not edges at import time. The contracts run through ``lint-imports`` as
CI runs it, so a broken contract fails here with the offending import chain in the message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph("remoteproc", exclude_type_checking_imports=True, cache_dir=None)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative), each as a
    closed path through its nodes so that a failure shows the circle itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    comps.append(_circle(sorted(comp), edges))
    return comps


def _circle(comp: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A path from comp[0] back to itself inside the component (breadth-first, shortest)."""
    members = set(comp)
    first = comp[0]
    prev: dict[str, str] = {}
    frontier = [first]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for dep in sorted(edges[node] & members):
                if dep == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(prev[path[-1]])
                    return [first, *reversed(path[:-1]), first]
                if dep not in prev:
                    prev[dep] = node
                    nxt_frontier.append(dep)
        frontier = nxt_frontier
    return comp


def test_cycle_finder_reports_a_circle() -> None:
    """The finder itself: a known circle is found and shown as a path; a DAG has none."""
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _cycles(edges) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    graph = _graph()
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert len(edges) > 50, "grimp did not see the package"
    cycles = _cycles(edges)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_between_subpackages() -> None:
    """The same, with every first-level subpackage squashed into one node (remoteproc.core,
    remoteproc.abi, ...): a circle between floors, even through different modules."""
    graph = _graph()
    edges: dict[str, set[str]] = {}
    for m in graph.modules:
        top = ".".join(m.split(".")[:2])
        deps = edges.setdefault(top, set())
        for dep in graph.find_modules_directly_imported_by(m):
            dep_top = ".".join(dep.split(".")[:2])
            if dep_top != top:
                deps.add(dep_top)
    cycles = _cycles(edges)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def _lint_imports(contract: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports")
    cmd = [exe] if exe else [sys.executable, "-m", "importlinter.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([*cmd, "--no-cache", "--no-logo", "--contract", contract],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_layer_contract() -> None:
    r = _lint_imports("layers")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout, r.stdout


def test_client_contract() -> None:
    r = _lint_imports("client")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout, r.stdout
