"""Off-peak window arithmetic with a frozen clock: weekdays, midnight crossings, weekends, DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lora_tasks.errors import LoraTaskError
from lora_tasks.scheduling.windows import load_calendar, parse_calendar

PARIS = ZoneInfo("Europe/Paris")
CALENDAR = load_calendar()  # include/scheduling.yaml: weeknights 22:00-06:00, weekends all day


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (paris(2026, 11, 24, 12, 0), paris(2026, 11, 24, 22, 0)),   # Tuesday noon -> tonight
        (paris(2026, 11, 24, 23, 0), paris(2026, 11, 24, 23, 0)),   # inside: now
        (paris(2026, 11, 25, 5, 59), paris(2026, 11, 25, 5, 59)),   # past midnight, still Tuesday's window
        (paris(2026, 11, 25, 6, 0), paris(2026, 11, 25, 22, 0)),    # the window has just closed
        (paris(2026, 11, 27, 21, 0), paris(2026, 11, 27, 22, 0)),   # Friday evening
        (paris(2026, 11, 29, 15, 0), paris(2026, 11, 29, 15, 0)),   # Sunday afternoon
        (paris(2026, 11, 30, 0, 30), paris(2026, 11, 30, 0, 30)),   # Sunday night runs to Monday 06:00
        (paris(2026, 11, 30, 6, 30), paris(2026, 11, 30, 22, 0)),   # weekend over
    ],
)
def test_next_start(now: datetime, expected: datetime) -> None:
    assert CALENDAR.next_start(now) == expected


def test_friday_night_and_the_weekend_are_one_stretch() -> None:
    start, end = CALENDAR.window_at(paris(2026, 11, 28, 12, 0))
    assert start == paris(2026, 11, 27, 22, 0) and end == paris(2026, 11, 30, 6, 0)


def test_windows_keep_wall_times_across_dst() -> None:
    """Clocks go back on Sunday 25 October 2026: that weekend lasts an hour longer in real time."""
    dst_start, dst_end = CALENDAR.window_at(paris(2026, 10, 25, 12, 0))
    normal_start, normal_end = CALENDAR.window_at(paris(2026, 11, 1, 12, 0))
    assert dst_end - dst_start == (normal_end - normal_start) + timedelta(hours=1)
    assert dst_end.astimezone(PARIS).hour == 6 and dst_start.astimezone(PARIS).hour == 22
    spring_start, spring_end = CALENDAR.window_at(paris(2027, 3, 28, 12, 0))  # clocks go forward
    assert spring_end - spring_start == (normal_end - normal_start) - timedelta(hours=1)


def test_utc_input_and_a_window_inside_one_day() -> None:
    calendar = parse_calendar({"timezone": "America/New_York",
                               "off_peak_windows": [{"days": ["wed"], "start": "01:00", "end": "05:00"}]})
    now = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # Wednesday 02:00 in New York
    assert calendar.next_start(now) == now
    assert calendar.next_start(now + timedelta(hours=4)) == datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is unknown"),
        ({"off_peak_windows": [{"days": ["funday"], "start": "01:00", "end": "02:00"}]}, "are not weekdays"),
        ({"off_peak_windows": [{"start": "25:00", "end": "02:00"}]}, "is not a time of day"),
        ({"off_peak_windows": [{"start": "03:00", "end": "03:00"}]}, "an empty window"),
        ({"off_peak_windows": [{"start": "24:00", "end": "03:00"}]}, "cannot start a window"),
    ],
)
def test_bad_calendars_are_refused(data: dict, expected: str) -> None:
    with pytest.raises(LoraTaskError, match=expected):
        parse_calendar(data)


def test_no_windows_and_naive_times() -> None:
    with pytest.raises(LoraTaskError, match="no off-peak window"):
        parse_calendar({"off_peak_windows": []}).next_start(datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        CALENDAR.next_start(datetime(2026, 1, 1))


def test_overlapping_windows_are_refused() -> None:
    with pytest.raises(LoraTaskError, match=r"off_peak_windows\[0\] and \[1\] overlap on sat from 22:00"):
        parse_calendar({"off_peak_windows": [{"days": ["sat"], "start": "00:00", "end": "24:00"},
                                             {"days": ["sat"], "start": "22:00", "end": "23:00"}]})
    touching = parse_calendar({"off_peak_windows": [{"days": ["fri"], "start": "22:00", "end": "24:00"},
                                                    {"days": ["sat"], "start": "00:00", "end": "06:00"}]})
    assert touching.window_at(paris(2026, 11, 28, 1, 0)) is not None


def test_prices_split_at_window_edges() -> None:
    start, end = paris(2026, 11, 24, 20, 0), paris(2026, 11, 25, 8, 0)  # 12 h: 2 peak, 8 off-peak, 2 peak
    assert CALENDAR.off_peak_seconds(start, end) == 8 * 3600
    price = CALENDAR.price("l4")
    assert CALENDAR.cost("l4", start, end) == pytest.approx(4 * price.peak + 8 * price.off_peak)
    assert CALENDAR.price_at("l4", paris(2026, 11, 24, 23, 0)) == price.off_peak
    with pytest.raises(LoraTaskError, match="no price"):
        CALENDAR.price("tpu-v9")
    with pytest.raises(LoraTaskError, match="needs numbers peak and off_peak"):
        parse_calendar({"prices": {"l4": {"peak": "cheap"}}})


@pytest.mark.parametrize(
    ("windows", "crons"),
    [
        (None, ["0 22 * * mon,tue,wed,thu,fri"]),  # the weekend continues Friday night: no 00:00 firing
        ([{"start": "00:00", "end": "24:00"}], ["0 0 * * mon,tue,wed,thu,fri,sat,sun"]),  # always off-peak
        ([{"days": ["sat"], "start": "01:00", "end": "05:00"}, {"days": ["mon"], "start": "22:30", "end": "02:00"}],
         ["0 1 * * sat", "30 22 * * mon"]),
    ],
)
def test_the_nightly_batch_fires_where_a_stretch_begins(windows: list | None, crons: list[str]) -> None:
    calendar = CALENDAR if windows is None else parse_calendar({"timezone": "Europe/Paris",
                                                                "off_peak_windows": windows})
    assert calendar.crons() == crons

