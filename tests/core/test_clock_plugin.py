"""The --clock option: marked tests start at the chosen instants, everything else on real time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]

PROBE = '''
import pytest
from koc.core.db import utcnow


@pytest.mark.clock
def test_marked():
    print("probe-marked", utcnow().isoformat())


def test_unmarked():
    print("probe-unmarked", utcnow().isoformat())
'''


@pytest.fixture
def probe(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A project of two tests, one marked clock, run with the plugin in a pytest subprocess."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("KOC_TEST_CLOCK", raising=False)
    pytester.makeini("[pytest]\nmarkers = clock: builds dates from the clock\n")
    pytester.makepyfile(test_probe=PROBE)
    return pytester


def _seen(result: pytest.RunResult, kind: str) -> list[str]:
    """The clock readings (to the minute) that the `kind` probe printed."""
    found = re.findall(rf"probe-{kind} (\S+)", result.stdout.str())
    return sorted(reading[:16] for reading in found)


def test_marked_tests_start_at_each_instant_and_the_others_stay_on_the_real_clock(
    probe: pytest.Pytester,
) -> None:
    from koc.core.db import utcnow

    result = probe.runpytest_subprocess(
        "-p", "tests.plugins.clock", "-s", "-v",
        "--clock=2028-02-29T12:00:00+08:00, 2026-12-31T23:30:00Z")
    result.assert_outcomes(passed=3)
    assert _seen(result, "marked") == ["2026-12-31T23:30", "2028-02-29T04:00"]
    result.stdout.fnmatch_lines(["*test_marked?clock=2028-02-29T12:00+08:00? probe-marked*",
                                 "*test_marked?clock=2026-12-31T23:30+00:00? probe-marked*"])
    assert _seen(result, "unmarked")[0][:10] == utcnow().date().isoformat()


def test_one_instant_from_the_environment_runs_each_marked_test_once(
    probe: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOC_TEST_CLOCK", "2027-03-07T23:40:00Z")
    result = probe.runpytest_subprocess("-p", "tests.plugins.clock", "-s", "-m", "clock")
    result.assert_outcomes(passed=1)
    assert _seen(result, "marked") == ["2027-03-07T23:40"]


def test_an_instant_without_a_utc_offset_is_refused(probe: pytest.Pytester) -> None:
    result = probe.runpytest_subprocess("-p", "tests.plugins.clock",
                                           "--clock=2027-03-01T10:00:00")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*has no UTC offset*"])
