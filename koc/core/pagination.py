"""List endpoints: `?page=&page_size=` (default 20, max 200), echoed in an X-Pagination header."""

from __future__ import annotations

from typing import Any

import flask_smorest
import sqlalchemy as sa
from flask_smorest import Page

from koc.extensions import db


class Blueprint(flask_smorest.Blueprint):
    """The blueprint every domain's api.py uses, so lists page the same way everywhere."""

    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 20, "max_page_size": 200}  # noqa: RUF012

    @staticmethod
    def _make_pagination_metadata(page: int, page_size: int, item_count: int) -> dict[str, Any]:
        total_pages = (item_count + page_size - 1) // page_size
        return {
            "total": item_count,
            "page": page,
            "page_size": page_size,
            "total_pages": total_pages,
        }


class SelectPage(Page):
    """Pages through an SQLAlchemy Select with OFFSET/LIMIT and one COUNT query."""

    @property
    def items(self) -> list[Any]:
        stmt = self.collection.offset(self.page_params.first_item).limit(
            self.page_params.page_size
        )
        return list(db.session.scalars(stmt))

    @property
    def item_count(self) -> int:
        count_stmt = sa.select(sa.func.count()).select_from(
            self.collection.order_by(None).subquery()
        )
        return db.session.scalar(count_stmt)
