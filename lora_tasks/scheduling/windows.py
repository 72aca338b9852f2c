"""Off-peak windows in a named time zone: is it off-peak now, and if not, when does it start?

Windows are wall-clock times on named weekdays ("mon 22:00 to 06:00" runs into Tuesday).
Each is turned into real instants through the zone's rules, so a window keeps its wall
times across DST changes (and is an hour shorter or longer that night). Overlapping or
touching windows merge, so a weekend window and Friday night's read as one stretch.
The current time is always a parameter: nothing here reads the clock.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from lora_tasks.errors import LoraTaskError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "include" / "scheduling.yaml"
Interval = tuple[datetime, datetime]
REFERENCE_MONDAY = date(2026, 1, 5)
"""A week without DST changes: how wall-clock windows meet does not depend on the week chosen."""


@dataclass(frozen=True)
class Window:
    days: tuple[int, ...]
    """Weekdays the window starts on, Monday = 0."""
    start: time
    end: time | None
    """None means midnight at the end of the day ("24:00")."""

    def on(self, day: date, zone: ZoneInfo) -> Interval:
        """The window starting on ``day``, as UTC instants."""
        start = _instant(day, self.start, zone)
        if self.end is None or self.end <= self.start:
            end = _instant(day + timedelta(days=1), self.end or time(0), zone)
        else:
            end = _instant(day, self.end, zone)
        return start, end


@functools.lru_cache(maxsize=4096)
def _merged_intervals(zone: ZoneInfo, windows: tuple[Window, ...], local_day: date, days_before: int,
                      days_after: int) -> tuple[Interval, ...]:
    """The windows around one local day as merged UTC intervals; cached, because a replay asks
    about the same few days millions of times."""
    spans = sorted(
        window.on(day, zone)
        for offset in range(-days_before, days_after + 1)
        for day in [local_day + timedelta(days=offset)]
        for window in windows
        if day.weekday() in window.days
    )
    merged: list[Interval] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """A wall-clock time as UTC; in a spring-forward gap it lands just after the gap."""
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Price:
    peak: float
    off_peak: float
    """USD per GPU-hour outside and inside the off-peak windows."""


@dataclass(frozen=True)
class OffPeakCalendar:
    zone: ZoneInfo
    windows: tuple[Window, ...]
    prices: dict[str, Price] = field(default_factory=dict)

    def intervals(self, around: datetime, days_before: int = 7, days_after: int = 8) -> list[Interval]:
        """Merged off-peak intervals from a week before ``around`` to a week after (a merged stretch can span days)."""
        local_day = around.astimezone(self.zone).date()
        return list(_merged_intervals(self.zone, self.windows, local_day, days_before, days_after))

    def crons(self) -> list[str]:
        """Cron expressions (in the calendar's zone) firing where an off-peak stretch begins. A
        window that continues another (Saturday 00:00 after Friday night) begins nothing; a
        calendar that is off-peak all week fires where its windows start."""
        monday = datetime.combine(REFERENCE_MONDAY, time(0), tzinfo=self.zone)
        starts: dict[time, set[int]] = {}
        for start, _ in self.intervals(monday + timedelta(days=3)):
            local = start.astimezone(self.zone)
            if monday <= local < monday + timedelta(days=7):
                starts.setdefault(local.time(), set()).add(local.weekday())
        if not starts:
            starts = {w.start: set(w.days) for w in self.windows}
        return sorted(f"{at.minute} {at.hour} * * {','.join(DAYS[d] for d in sorted(days))}"
                      for at, days in starts.items())

    def off_peak_seconds(self, start: datetime, end: datetime) -> float:
        """How much of [start, end) falls inside off-peak windows."""
        total, cursor = 0.0, start
        while cursor < end:  # a week of windows at a time
            chunk_end = min(end, cursor + timedelta(days=7))
            for w_start, w_end in self.intervals(cursor):
                overlap = (min(chunk_end, w_end) - max(cursor, w_start)).total_seconds()
                total += max(0.0, overlap)
            cursor = chunk_end
        return total

    def price(self, gpu_type: str) -> Price:
        if gpu_type not in self.prices:
            raise LoraTaskError(f"GPU type {gpu_type!r} has no price in scheduling.yaml. Fix: add it under prices")
        return self.prices[gpu_type]

    def cost(self, gpu_type: str, start: datetime, end: datetime) -> float:
        """The cost of one GPU of this type held from start to end, at peak and off-peak prices."""
        off_peak = self.off_peak_seconds(start, end)
        peak = (end - start).total_seconds() - off_peak
        price = self.price(gpu_type)
        return (peak * price.peak + off_peak * price.off_peak) / 3600

    def price_at(self, gpu_type: str, moment: datetime) -> float:
        price = self.price(gpu_type)
        return price.off_peak if self.window_at(moment) else price.peak

    def window_at(self, moment: datetime) -> Interval | None:
        return next(((s, e) for s, e in self.intervals(moment) if s <= moment < e), None)

    def next_start(self, moment: datetime) -> datetime:
        """``moment`` itself when it is off-peak, else the start of the next off-peak window."""
        _require_aware(moment)
        for start, end in self.intervals(moment):
            if start <= moment < end:
                return moment
            if start > moment:
                return start
        raise LoraTaskError("no off-peak window in the coming week. Fix: add off_peak_windows to scheduling.yaml")


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("moments must be timezone-aware")


def _clock(value: object, where: str) -> time | None:
    text = str(value)
    if not CLOCK.match(text):
        raise LoraTaskError(f"{where}: {value!r} is not a time of day. Fix: write \"HH:MM\" (00:00 to 24:00)")
    if text == "24:00":
        return None
    hours, minutes = map(int, text.split(":"))
    return time(hours, minutes)


def parse_calendar(data: dict, source: str = "scheduling.yaml") -> OffPeakCalendar:
    try:
        zone = ZoneInfo(str(data.get("timezone", "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        raise LoraTaskError(f"{source}: timezone {data.get('timezone')!r} is unknown. Fix: use an IANA name such "
                            "as Europe/Paris") from None
    windows = []
    for i, entry in enumerate(data.get("off_peak_windows") or []):
        where = f"{source}: off_peak_windows[{i}]"
        days = entry.get("days", DAYS)
        unknown = [d for d in days if str(d).lower()[:3] not in DAYS]
        if unknown:
            raise LoraTaskError(f"{where}.days: {unknown} are not weekdays. Fix: use {', '.join(DAYS)}")
        start, end = _clock(entry.get("start"), f"{where}.start"), _clock(entry.get("end"), f"{where}.end")
        if start is None:
            raise LoraTaskError(f"{where}.start: 24:00 cannot start a window. Fix: use 00:00")
        if end == start:
            raise LoraTaskError(f"{where}: start and end are both {start:%H:%M}, an empty window. Fix: use "
                                "00:00 to 24:00 for a whole day")
        windows.append(Window(tuple(sorted({DAYS.index(str(d).lower()[:3]) for d in days})), start, end))
    _refuse_overlaps(windows, zone, source)
    return OffPeakCalendar(zone, tuple(windows), _prices(data.get("prices") or {}, source))


def _refuse_overlaps(windows: list[Window], zone: ZoneInfo, source: str) -> None:
    """Windows may meet end to start, but not overlap: overlapping prices would be ambiguous."""
    week = REFERENCE_MONDAY
    spans = [(window.on(week + timedelta(days=d), zone), i) for i, window in enumerate(windows)
             for d in range(8) if (week + timedelta(days=d)).weekday() in window.days]
    spans.sort()
    for ((_, end_a), i), ((start_b, _), j) in itertools.pairwise(spans):
        if start_b < end_a and i != j:
            when = start_b.astimezone(zone)
            raise LoraTaskError(f"{source}: off_peak_windows[{min(i, j)}] and [{max(i, j)}] overlap on "
                                f"{DAYS[when.weekday()]} from {when:%H:%M}. Fix: merge them, or let one end where "
                                "the other starts")


def _prices(data: dict, source: str) -> dict[str, Price]:
    prices = {}
    for gpu, entry in data.items():
        try:
            price = Price(float(entry["peak"]), float(entry["off_peak"]))
        except (KeyError, TypeError, ValueError):
            raise LoraTaskError(f"{source}: prices.{gpu} needs numbers peak and off_peak (USD per GPU-hour)") from None
        if price.peak < 0 or price.off_peak < 0:
            raise LoraTaskError(f"{source}: prices.{gpu} has a negative price")
        prices[gpu] = price
    return prices


def load_calendar(path: Path | None = None) -> OffPeakCalendar:
    path = path or DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LoraTaskError(f"{path} cannot be read ({exc}). Fix: check LORA_SCHEDULING_FILE") from None
    return parse_calendar(data, str(path))
