"""Fixtures shared by the example's tests."""

from __future__ import annotations

import pytest
from target import CORE

from remoteproc.client import AbiRoot, RemoteProc


@pytest.fixture
def core(remoteproc: AbiRoot) -> RemoteProc:
    """The processor under test, running: an emulated core that auto-boots already is; on a
    board whose core was offline, it is started here."""
    proc = remoteproc.processor(CORE)
    if proc.state == "offline":
        proc.start()
    proc.wait_state(("running", "attached"), timeout=30)
    return proc
