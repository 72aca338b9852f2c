"""The clock, as a parameter: code that stamps time takes a ``Clock`` and defaults to this one,
so tests pass a fixed instant instead of depending on today's date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
