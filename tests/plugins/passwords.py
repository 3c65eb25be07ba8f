"""pytest plugin: staff passwords hashed with argon2 at its cheapest settings during tests.

The production settings spend about half a second per hash on purpose; tests create several
staff members each, and those hashes were most of the suite's time (and of every extra run of
the date-sensitive tests). It is still argon2, hashed and verified by the same code: only the
cost parameters, which each hash carries with it, are lower.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _cheap_password_hashes() -> Iterator[None]:
    from argon2 import PasswordHasher

    from koc.core import auth

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(auth, "_password_hasher",
                      PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        yield
