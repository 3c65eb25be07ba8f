"""One commit per request, written once: handlers and admin views never commit.

A request that ends in a success status commits what its handler flushed; one that ends in an
error status, or raises, rolls back, so a refused request leaves nothing half-written. A
`DomainError` whose `keeps_changes` is set is the one exception: the service has already undone
something outside the database (an upload it refused and deleted) and the rows saying so must
stay. Tasks get the same rule from the Celery task base in `koc.core.celery`.
"""

from __future__ import annotations

from flask import Flask, Response, g

from koc.extensions import db

_KEEP_CHANGES = "koc_keep_changes"


def keep_changes_despite_error() -> None:
    """Commit this request's changes although it answers with an error status."""
    setattr(g, _KEEP_CHANGES, True)


def _finish(response: Response) -> Response:
    if not db.session().in_transaction():
        return response  # committed already (an idempotent write), or nothing was begun
    if response.status_code < 400 or g.get(_KEEP_CHANGES, False):
        db.session.commit()
    else:
        db.session.rollback()
    return response


def install(app: Flask) -> None:
    app.after_request(_finish)
