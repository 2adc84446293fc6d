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
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
