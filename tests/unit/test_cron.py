"""Cron arithmetic (index/cron.py): fire times across both DST changes in two timezones, and errors."""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spitfire.index.cron import CronError, check_expression, fires_between, next_fire, rfc3339

ZONES = {
    # zone: (the day of spring forward, the day of fall back), 2026
    "Europe/Berlin": ((2026, 3, 29), (2026, 10, 25)),
    "America/New_York": ((2026, 3, 8), (2026, 11, 1)),
}


def local(tz: str, *fields: int) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(tz)).timestamp()  # type: ignore[misc]


def walls(tz: str, instants: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%d %H:%M%z") for t in instants]


def series(expr: str, tz: str, after: float, n: int) -> list[float]:
    out = []
    for _ in range(n):
        after = next_fire(expr, tz, after)
        out.append(after)
    return out


@pytest.mark.parametrize("tz", ZONES)
def test_a_daily_0230_job_runs_once_on_both_change_days(tz: str) -> None:
    (spring, fall) = ZONES[tz]
    spring_runs = walls(tz, series("30 2 * * *", tz, local(tz, *spring, 0) - 12 * 3600, 3))
    # The day clocks spring forward has no 02:30: the job runs at 03:00, the first valid time.
    offset = {"Europe/Berlin": ("+0100", "+0200"), "America/New_York": ("-0500", "-0400")}[tz]
    assert spring_runs == [
        f"{spring[2]:02d} 03:00{offset[1]}",
        f"{spring[2] + 1:02d} 02:30{offset[1]}",
        f"{spring[2] + 2:02d} 02:30{offset[1]}",
    ]
    fall_runs = series("30 2 * * *", tz, local(tz, *fall, 0) - 12 * 3600, 2)
    assert len(fall_runs) == 2 and fall_runs[1] - fall_runs[0] >= 23 * 3600  # once a day, never twice


@pytest.mark.parametrize("tz", ZONES)
def test_every_15_minutes_fires_once_per_wall_clock_time_in_the_repeated_hour(tz: str) -> None:
    (_, fall) = ZONES[tz]
    start = local(tz, *fall, 0, 50)
    fired = series("*/15 * * * *", tz, start, 12)
    stamps = [datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%H:%M") for t in fired]
    assert len(stamps) == len(set(stamps))  # no wall-clock time twice
    assert stamps == ["01:00", "01:15", "01:30", "01:45", "02:00", "02:15", "02:30", "02:45",
                      "03:00", "03:15", "03:30", "03:45"]  # fmt: skip
    repeated_hour = {"Europe/Berlin": 2, "America/New_York": 1}[tz]
    gaps = [b - a for a, b in itertools.pairwise(fired)]
    # After the last quarter of the repeated hour comes a gap of 1 h 15 min (its second pass).
    assert max(gaps) == 75 * 60
    assert stamps[gaps.index(max(gaps))].startswith(f"0{repeated_hour}:45")


@pytest.mark.parametrize("tz", ZONES)
def test_every_15_minutes_skips_the_missing_hour_and_fires_once_at_the_change(tz: str) -> None:
    (spring, _) = ZONES[tz]
    fired = series("*/15 * * * *", tz, local(tz, *spring, 1, 40), 4)
    assert [datetime.fromtimestamp(t, ZoneInfo(tz)).strftime("%H:%M") for t in fired] == [
        "01:45", "03:00", "03:15", "03:30",
    ]  # fmt: skip
    # The skipped 02:xx times all map to the change instant: it fires once.
    assert fires_between("15 2 * * *", tz, fired[0], fired[-1], 100) == [fired[1]]


def test_six_fields_take_seconds_last_and_aliases_work() -> None:
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    assert next_fire("0 3 * * * 30", "UTC", t0) == t0 + 3 * 3600 + 30
    assert next_fire("@hourly", "UTC", t0) == t0 + 3600
    assert check_expression("  0   3 * * * ") == "0 3 * * *"
    assert rfc3339(t0 + 0.9) == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("bad", ["", "* * * *", "* * * * * * *", "61 * * * *", "@fortnightly", "a b c d e"])
def test_bad_expressions(bad: str) -> None:
    with pytest.raises(CronError) as err:
        check_expression(bad)
    assert err.value.field == "cron"


def test_an_expression_that_never_fires_and_an_unknown_timezone() -> None:
    with pytest.raises(CronError) as err:
        next_fire("0 0 30 2 *", "UTC", 0.0)
    assert err.value.field == "cron"
    with pytest.raises(CronError) as err:
        next_fire("* * * * *", "Nowhere/Atlantis", 0.0)
    assert err.value.field == "timezone"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["*/7 * * * *", "30 2 * * *", "0 */3 * * *", "15,45 1-3 * * *", "* * * * * */20"]),
    st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    st.floats(min_value=1.7e9, max_value=1.9e9),
)
def test_fire_times_increase_and_agree_with_fires_between(expr: str, tz: str, after: float) -> None:
    fired = series(expr, tz, after, 5)
    assert fired == sorted(set(fired)) and fired[0] > after
    assert fires_between(expr, tz, after, fired[-1], 100) == fired
    assert fires_between(expr, tz, after, fired[-1], 2) == fired[-2:]
    wall = [datetime.fromtimestamp(t, ZoneInfo(tz)).replace(tzinfo=None) for t in fired]
    assert len(wall) == len(set(wall))  # no wall-clock time fires twice
