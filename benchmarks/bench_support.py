"""What benchmark modules share with ``run.py``: ``NotMeasured``, raised by a figure whose
prerequisites (opt-in third-party programs) are absent. ``run.py`` reports such a figure as
not measured, with the reason, and never as a number."""

from __future__ import annotations


class NotMeasured(Exception):
    """The figure cannot be measured here; the message says why."""
