"""Fixtures for submissions: posting a submission in one line."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Api


@pytest.fixture
def post_submission() -> Callable[..., dict]:
    """`post_submission(member_api_client, likes=.., views=.., **fields)` -> the 201 body."""
    counter = itertools.count(1)

    def factory(member: Api, *, metrics: dict[str, int] | None = None, **fields: Any) -> dict:
        body = {
            "platform": "xiaohongshu",
            "post_url": f"https://www.xiaohongshu.com/explore/{next(counter):024x}",
            "posted_at": "2026-11-01T10:00:00+00:00",
            "metrics": metrics if metrics is not None else {"views": 800, "likes": 40,
                                                            "comments": 4, "saves": 9},
            **fields,
        }
        response = member.post("/submissions", json=body)
        assert response.status_code == 201, response.json
        return response.json

    return factory
