"""The cron dialect of CronJob spec.schedule: parsing, and the next run, across DST."""

from __future__ import annotations

import datetime as dt

import pytest

from api.batch import Schedule, ScheduleError, parse_schedule, time_zone

ALL_MINUTES = frozenset(range(60))
ALL_HOURS = frozenset(range(24))


@pytest.mark.parametrize("text,field,expected", [
    pytest.param("* * * * *", "minutes", ALL_MINUTES, id="star"),
    pytest.param("? * * * *", "minutes", ALL_MINUTES, id="question-mark"),
    pytest.param("5 * * * *", "minutes", frozenset({5}), id="single"),
    pytest.param("1,2,40 * * * *", "minutes", frozenset({1, 2, 40}), id="list"),
    pytest.param("10-13 * * * *", "minutes", frozenset({10, 11, 12, 13}), id="range"),
    pytest.param("*/15 * * * *", "minutes", frozenset({0, 15, 30, 45}), id="star-step"),
    pytest.param("10-30/10 * * * *", "minutes", frozenset({10, 20, 30}), id="range-step"),
    pytest.param("50/5 * * * *", "minutes", frozenset({50, 55}), id="start-step-to-max"),
    pytest.param("1-3,50/5 * * * *", "minutes", frozenset({1, 2, 3, 50, 55}),
                 id="list-of-range-and-step"),
    pytest.param("0 9-17/4 * * *", "hours", frozenset({9, 13, 17}), id="hours"),
    pytest.param("0 0 1,15,31 * *", "days", frozenset({1, 15, 31}), id="days-of-month"),
    pytest.param("0 0 1 jan,JUL * ", "months", frozenset({1, 7}), id="month-names"),
    pytest.param("0 0 1 mar-may *", "months", frozenset({3, 4, 5}), id="month-name-range"),
    pytest.param("0 0 * * mon-fri", "weekdays", frozenset({1, 2, 3, 4, 5}),
                 id="weekday-names"),
    pytest.param("0 0 * * 7", "weekdays", frozenset({0}), id="seven-is-sunday"),
    pytest.param("0 0 * * 5-7", "weekdays", frozenset({5, 6, 0}), id="range-to-seven"),
    pytest.param("0 0 * * Sun,sat", "weekdays", frozenset({0, 6}), id="names-any-case"),
    pytest.param("@hourly", "minutes", frozenset({0}), id="hourly-minute"),
    pytest.param("@hourly", "hours", ALL_HOURS, id="hourly-hours"),
    pytest.param("@daily", "hours", frozenset({0}), id="daily"),
    pytest.param("@midnight", "hours", frozenset({0}), id="midnight"),
    pytest.param("@weekly", "weekdays", frozenset({0}), id="weekly"),
    pytest.param("@monthly", "days", frozenset({1}), id="monthly"),
    pytest.param("@yearly", "months", frozenset({1}), id="yearly"),
    pytest.param("@ANNUALLY", "days", frozenset({1}), id="annually-any-case"),
])
def test_parse_fields(text: str, field: str, expected: frozenset[int]) -> None:
    assert getattr(parse_schedule(text), field) == expected


@pytest.mark.parametrize("text,any_day,any_weekday", [
    pytest.param("0 0 * * *", True, True, id="both-star"),
    pytest.param("0 0 13 * *", False, True, id="day-restricted"),
    pytest.param("0 0 * * 5", True, False, id="weekday-restricted"),
    pytest.param("0 0 */2 * *", False, True, id="stepped-star-restricts"),
    pytest.param("0 0 ? * 1", True, False, id="question-mark"),
])
def test_parse_star_flags(text: str, any_day: bool, any_weekday: bool) -> None:
    s = parse_schedule(text)
    assert (s.any_day, s.any_weekday) == (any_day, any_weekday)


@pytest.mark.parametrize("text,message", [
    pytest.param("61 * * * *", 'invalid minute "61": must be within 0-59', id="minute-61"),
    pytest.param("0 24 * * *", 'invalid hour "24": must be within 0-23', id="hour-24"),
    pytest.param("0 0 0 * *", 'invalid day of month "0": must be within 1-31',
                 id="day-0"),
    pytest.param("0 0 1 13 *", 'invalid month "13": must be within 1-12', id="month-13"),
    pytest.param("0 0 * * 8", 'invalid day of week "8": must be within 0-7', id="weekday-8"),
    pytest.param("0 0 1 foo *", 'invalid month "foo": not a number or a name',
                 id="unknown-month-name"),
    pytest.param("0 0 * * mon-xyz", 'invalid day of week "mon-xyz": not a number or a name',
                 id="unknown-weekday-name"),
    pytest.param("jan * * * *", 'invalid minute "jan": not a number', id="name-in-minute"),
    pytest.param("1,61 * * * *", 'invalid minute "61"', id="bad-list-item"),
    pytest.param("1,,2 * * * *", 'invalid minute ""', id="empty-list-item"),
    pytest.param("30-10 * * * *", 'invalid minute "30-10": the range starts after it ends',
                 id="backward-range"),
    pytest.param("*/0 * * * *", 'invalid minute "*/0": the step must be a positive integer',
                 id="step-zero"),
    pytest.param("*/x * * * *", 'invalid minute "*/x"', id="step-not-number"),
    pytest.param("-5 * * * *", 'invalid minute "-5"', id="negative"),
    pytest.param("* * * *", "expected 5 fields", id="four-fields"),
    pytest.param("0 * * * * *", "got 6", id="six-fields-seconds"),
    pytest.param("", "got 0", id="empty"),
    pytest.param("@every 5m", 'unknown macro "@every 5m"', id="every-unsupported"),
    pytest.param("@fortnightly", 'unknown macro "@fortnightly"', id="unknown-macro"),
    pytest.param("CRON_TZ=UTC 0 * * * *", "set spec.timeZone instead", id="cron-tz-prefix"),
    pytest.param("TZ=UTC 0 * * * *", "set spec.timeZone instead", id="tz-prefix"),
])
def test_parse_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(ScheduleError) as err:
        parse_schedule(text)
    assert message in str(err.value)


def ts(text: str, tz: str = "UTC") -> float:
    """Seconds since the epoch of a wall-clock time in TZ (its first occurrence)."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=time_zone(tz)).timestamp()


def utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize("text,after,expected", [
    pytest.param("* * * * *", "2024-01-01T10:00:00", "2024-01-01T10:01:00",
                 id="every-minute-strictly-after"),
    pytest.param("* * * * *", "2024-01-01T10:00:59", "2024-01-01T10:01:00",
                 id="every-minute-mid-minute"),
    pytest.param("*/15 * * * *", "2024-01-01T10:16:00", "2024-01-01T10:30:00",
                 id="step"),
    pytest.param("0 * * * *", "2024-12-31T23:30:00", "2025-01-01T00:00:00",
                 id="year-rollover"),
    pytest.param("30 9 * * mon-fri", "2024-01-05T10:00:00", "2024-01-08T09:30:00",
                 id="weekdays-skip-weekend"),
    pytest.param("0 0 13 * 5", "2024-01-01T00:00:00", "2024-01-05T00:00:00",
                 id="day-or-weekday-when-both-restricted"),
    pytest.param("0 0 1,15 * 1", "2024-01-02T00:00:00", "2024-01-08T00:00:00",
                 id="monday-before-the-15th"),
    pytest.param("0 0 */10 * *", "2024-01-02T00:00:00", "2024-01-11T00:00:00",
                 id="stepped-day-and-any-weekday"),
    pytest.param("0 0 * 2 1", "2024-01-15T00:00:00", "2024-02-05T00:00:00",
                 id="weekday-and-month-both-needed"),
    pytest.param("0 0 29 2 *", "2025-01-01T00:00:00", "2028-02-29T00:00:00",
                 id="leap-day"),
    pytest.param("0 0 31 * *", "2024-04-01T00:00:00", "2024-05-31T00:00:00",
                 id="thirty-first-skips-short-months"),
    pytest.param("@yearly", "2024-06-01T00:00:00", "2025-01-01T00:00:00", id="yearly"),
    pytest.param("@weekly", "2024-01-01T00:00:00", "2024-01-07T00:00:00",
                 id="weekly-is-sunday"),
    pytest.param("@monthly", "2024-01-31T23:59:00", "2024-02-01T00:00:00", id="monthly"),
])
def test_next_in_utc(text: str, after: str, expected: str) -> None:
    assert parse_schedule(text).next(utc(after)) == utc(expected)


@pytest.mark.parametrize("text", [
    pytest.param("0 0 30 2 *", id="february-30"),
    pytest.param("0 0 31 4,6,9,11 *", id="april-31"),
])
def test_never_fires(text: str) -> None:
    assert parse_schedule(text).next(utc("2024-01-01T00:00:00")) is None


NY, BERLIN = "America/New_York", "Europe/Berlin"


@pytest.mark.parametrize("text,tz,after,expected", [
    pytest.param("0 9 * * *", BERLIN, "2024-01-10T00:00:00Z", "2024-01-10T08:00:00Z",
                 id="berlin-winter-utc+1"),
    pytest.param("0 9 * * *", BERLIN, "2024-07-10T00:00:00Z", "2024-07-10T07:00:00Z",
                 id="berlin-summer-utc+2"),
    pytest.param("0 9 * * *", NY, "2024-03-09T15:00:00Z", "2024-03-10T13:00:00Z",
                 id="ny-same-wall-time-across-spring-forward"),
    pytest.param("30 2 * * *", NY, "2024-03-09T08:00:00Z", "2024-03-11T06:30:00Z",
                 id="ny-spring-forward-skipped-time-does-not-run"),
    pytest.param("15 * * * *", NY, "2024-03-10T06:20:00Z", "2024-03-10T07:15:00Z",
                 id="ny-hourly-jumps-from-1-15-est-to-3-15-edt"),
    pytest.param("* * * * *", NY, "2024-03-10T06:59:00Z", "2024-03-10T07:00:00Z",
                 id="ny-every-minute-no-gap-in-real-time"),
    pytest.param("30 1 * * *", NY, "2024-11-03T04:00:00Z", "2024-11-03T05:30:00Z",
                 id="ny-fall-back-first-occurrence"),
    pytest.param("30 1 * * *", NY, "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z",
                 id="ny-fall-back-repeated-time-runs-once"),
    pytest.param("0 * * * *", NY, "2024-11-03T05:00:00Z", "2024-11-03T06:00:00Z",
                 id="ny-hourly-runs-in-repeated-hour"),
    pytest.param("* * * * *", NY, "2024-11-03T06:10:00Z", "2024-11-03T06:11:00Z",
                 id="ny-every-minute-runs-in-repeated-hour"),
    pytest.param("*/30 * * * *", NY, "2024-11-03T05:59:00Z", "2024-11-03T06:00:00Z",
                 id="ny-from-last-edt-minute-to-first-est"),
    pytest.param("*/20 1 * * *", NY, "2024-11-03T05:50:00Z", "2024-11-04T06:00:00Z",
                 id="ny-pinned-hour-runs-once-in-repeated-hour"),
    pytest.param("0 0 * * *", NY, "2024-03-10T04:30:00Z", "2024-03-10T05:00:00Z",
                 id="ny-midnight-est-before-spring-forward"),
])
def test_next_in_time_zone(text: str, tz: str, after: str, expected: str) -> None:
    got = parse_schedule(text).next(utc(after[:-1]), time_zone(tz))
    assert got == utc(expected[:-1])


def test_schedule_is_a_value() -> None:
    assert parse_schedule("0 0 * * 0") == parse_schedule("@weekly")
    assert isinstance(parse_schedule("@daily"), Schedule)


@pytest.mark.parametrize("name", [
    pytest.param("", id="empty"),
    pytest.param("Local", id="local"),
    pytest.param("Mars/Olympus_Mons", id="unknown"),
    pytest.param("../etc/passwd", id="path"),
    pytest.param("America", id="directory"),
])
def test_bad_time_zones(name: str) -> None:
    with pytest.raises(ValueError):
        time_zone(name)


def runs_at(schedule: Schedule, at: float, tz: dt.tzinfo) -> bool:
    """The rule, minute by minute: the wall clock matches, and a repeated wall time runs
    the second time only when the hour field is *."""
    local = dt.datetime.fromtimestamp(at, tz)
    return (local.minute in schedule.minutes and local.hour in schedule.hours
            and local.month in schedule.months and schedule.day_matches(local.date())
            and (local.fold == 0 or len(schedule.hours) == 24))


@pytest.mark.parametrize("text,tz,around", [
    pytest.param("*/7 * * * *", NY, "2024-03-10T07:00:00", id="ny-spring-every-7-min"),
    pytest.param("*/7 * * * *", NY, "2024-11-03T06:00:00", id="ny-fall-every-7-min"),
    pytest.param("10,40 1-2 * * *", NY, "2024-11-03T06:00:00", id="ny-fall-pinned-hours"),
    pytest.param("10,40 1-3 * * *", NY, "2024-03-10T07:00:00", id="ny-spring-pinned-hours"),
    pytest.param("0,30 * * * *", "Australia/Lord_Howe", "2024-04-06T15:00:00",
                 id="lord-howe-half-hour-fall-back"),
    pytest.param("0,30 * * * *", "Australia/Lord_Howe", "2024-10-05T15:30:00",
                 id="lord-howe-half-hour-spring-forward"),
    pytest.param("*/20 2 * * *", BERLIN, "2024-10-27T01:00:00", id="berlin-fall-2am"),
])
def test_next_agrees_with_the_minute_by_minute_rule(text: str, tz: str,
                                                    around: str) -> None:
    schedule, zone = parse_schedule(text), time_zone(tz)
    start = utc(around) - 4 * 3600
    runs = [m for m in range(int(start), int(start) + 8 * 3600, 60)
            if runs_at(schedule, m, zone)]
    assert runs, "the window has runs"
    for after in range(int(start), int(runs[-1]), 7 * 60 + 13):
        expected = next(r for r in runs if r > after)
        assert schedule.next(after, zone) == expected, dt.datetime.fromtimestamp(after, zone)
