"""候选人 at scale: a filter that would walk the whole ranking says so instead of hanging."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from tests.members.test_candidates import many_users


@pytest.fixture
def app(make_app: Callable[..., Flask], postgres_url: str) -> Flask:
    """PostgreSQL: the time limit is PostgreSQL's statement_timeout."""
    return make_app(KOC_DATABASE_URL=postgres_url)


def test_the_candidate_page_gives_up_on_a_filter_matching_no_one_and_keeps_it(
        app: Flask, signed_in, monkeypatch) -> None:
    from koc.members.services import candidates

    many_users(app, 200_000)
    viewer = signed_in("viewer", locale="zh_CN")
    # 1 ms: a walk of 200,000 rows cannot finish in it however quiet the machine (at 20 ms a
    # fast machine finished this filter's scan in time).
    monkeypatch.setattr(candidates, "TIME_LIMIT_MS", 1)
    page = viewer.get("/admin/candidates?city=Shanghai&ordered_within_days=1")
    assert page.status_code == 422
    # One message for the filters together, and no list that would claim nobody matches.
    assert page.text.count("匹配的顾客太少") == 1
    assert 'id="candidate-total"' not in page.text and "没有符合条件的候选人" not in page.text
    assert 'max="3650" value="1"' in page.text and 'value="Shanghai"' in page.text
    # With time to spare the same filters answer: nobody.
    monkeypatch.setattr(candidates, "TIME_LIMIT_MS", 60_000)
    page = viewer.get("/admin/candidates?city=Shanghai&ordered_within_days=1")
    assert page.status_code == 200 and 'id="candidates"' not in page.text
