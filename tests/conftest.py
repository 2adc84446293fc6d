"""What every test module shares: waiting on a condition with a deadline (never a bare sleep),
observing that a condition holds for a bounded time, and the run-wide settings.

Rules:
- A test waits for what it needs with ``wait_until(cond, timeout, what)``: it returns as soon as
  ``cond()`` is true and fails naming ``what`` at the deadline. Deadlines are generous (the CI
  machine is shared and loaded); they bound a failure, they do not pace a success.
- "Nothing happens for a while" is a real property of some code (an idle core uses no CPU, no
  duplicate message arrives). ``holds_for(cond, seconds, what)`` checks it throughout a window
  whose length is the thing under test, and says so at the call site.
- Shared fixtures of one area live with that area (``test_abi_support``, ``test_core_support``,
  ``test_emulator_support``, ``rpmsg_pair``); this file holds what all of them use.
- pytest-timeout (pyproject: ``timeout``) fails a hung test alone; the signal method raises in
  the test's own thread, so the run goes on with the next test.
- No test leaks its environment into the next: ``os.environ`` is restored after each test
  (``rproc --root X`` sets RPROC_ROOT in-process, so a CliRunner test used to leave it set for
  every later test and every subprocess they start).
- Captured output and failure text travel from an xdist worker to the controller through
  execnet, which refuses strings that are not UTF-8 encodable: a test about non-UTF-8 names
  whose log said "Direct firmware load for \udcff\udcfe-fw.elf" crashed its worker. Such text
  is written with backslash escapes in the report (the outcome is untouched).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

__all__ = ["holds_for", "wait_until"]

_POLL = 0.002  # seconds between two looks at the condition


def wait_until(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition",
               ) -> bool:
    """Return True as soon as ``cond()`` is true; fail (AssertionError naming ``what``) once
    ``timeout`` seconds have passed without it. ``assert wait_until(...)`` reads well too."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            if cond():  # one last look: the deadline passed while we slept
                return True
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(_POLL)
    return True


def holds_for(cond: Callable[[], object], seconds: float, what: str = "condition") -> bool:
    """Check that ``cond()`` stays true for ``seconds`` (a bounded observation: the window is
    the property under test, e.g. "no duplicate arrives"); fail naming ``what`` at once when
    it turns false. Returns True."""
    deadline = time.monotonic() + seconds
    while True:
        if not cond():
            raise AssertionError(f"{what} stopped holding within {seconds:g} s")
        if time.monotonic() >= deadline:
            return True
        time.sleep(min(_POLL * 5, max(0.0, deadline - time.monotonic())))


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


def _utf8(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome = yield
    report = outcome.get_result()
    report.sections = [(title, text if _encodable(text) else _utf8(text))
                       for title, text in report.sections]
    if report.longrepr is not None and not _encodable(str(report.longrepr)):
        report.longrepr = _utf8(str(report.longrepr))
