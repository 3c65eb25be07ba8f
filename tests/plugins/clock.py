"""pytest plugin: run the tests marked `clock` as if the wall clock said a chosen instant.

`--clock=2027-03-01T10:00:00+08:00` (or KOC_TEST_CLOCK) starts each marked test at that instant
under time-machine, and lets the clock tick on from there so timeouts, token lifetimes and
Celery still see time pass. Several instants separated by commas run every marked test once per
instant in the same process (one collection, one migrated template database for all of them).
Without the option the marked tests run on the real clock, so they must pass on any day as well.

A test is marked `clock` when it builds dates from the clock and the code under it works in
calendar units (weeks for streaks, days for grace periods, expiry and seeding deadlines, windows
compared in SQL), so that its outcome could change with the weekday, the month or the year.
Tests that only move an instant by seconds or minutes are left unmarked: every extra date
reruns the whole marked set. Code must read the clock in Python (`koc.core.db.utcnow()`, or a
`now` argument): time-machine moves Python's clock, not PostgreSQL's now(), a browser's or a
server subprocess's, so tests that drive those stay unmarked and on the real clock.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime

import pytest

CLOCK_OPTION = "--clock"
CLOCK_ENV = "KOC_TEST_CLOCK"
_INSTANTS = pytest.StashKey[list[datetime]]()


def parse_instants(text: str) -> list[datetime]:
    instants = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        try:
            instant = datetime.fromisoformat(part)
        except ValueError as exc:
            raise pytest.UsageError(f"{CLOCK_OPTION}: {part!r} is not an ISO 8601 instant") from exc
        if instant.tzinfo is None:
            raise pytest.UsageError(
                f"{CLOCK_OPTION}: {part!r} has no UTC offset; write e.g. {part}+08:00 or {part}Z")
        instants.append(instant)
    return instants


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        CLOCK_OPTION, default=os.environ.get(CLOCK_ENV, ""), metavar="INSTANT[,INSTANT...]",
        help=f"run the tests marked clock starting at these instants (env {CLOCK_ENV})")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_INSTANTS] = parse_instants(config.getoption(CLOCK_OPTION))


def pytest_report_header(config: pytest.Config) -> str | None:
    instants = config.stash[_INSTANTS]
    if not instants:
        return None
    return "clock: tests marked clock start at " + ", ".join(i.isoformat() for i in instants)


def _label(instant: datetime) -> str:
    return instant.isoformat(timespec="minutes")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    instants = metafunc.config.stash[_INSTANTS]
    if len(instants) > 1 and metafunc.definition.get_closest_marker("clock"):
        metafunc.parametrize("clock_instant", instants, indirect=True,
                             ids=[f"clock={_label(i)}" for i in instants])


@pytest.fixture
def clock_instant(request: pytest.FixtureRequest) -> datetime | None:
    """The instant this test starts at, or None when it runs on the real clock."""
    if request.node.get_closest_marker("clock") is None:
        return None
    if hasattr(request, "param"):
        return request.param
    instants = request.config.stash[_INSTANTS]
    return instants[0] if instants else None


@pytest.fixture(autouse=True)
def _travel_to_clock_instant(clock_instant: datetime | None) -> Iterator[None]:
    # Autouse, so it starts before the test's other function fixtures: apps, staff tokens and
    # sessions are then made at the travelled time, not minutes or years before it.
    if clock_instant is None:
        yield
        return
    import time_machine

    with time_machine.travel(clock_instant, tick=True):
        yield
