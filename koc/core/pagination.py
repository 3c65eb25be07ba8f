"""List endpoints: `?page=&page_size=` (default 20, max 200, page at most 1,000,000), echoed in
an X-Pagination header."""

from __future__ import annotations

from typing import Any

import flask_smorest
import sqlalchemy as sa
from flask_smorest import Page

from koc.core import fields as kf
from koc.extensions import db

# page x page_size stays far inside a 64-bit OFFSET (and SQLite's INTEGER) whatever is asked.
MAX_PAGE = 1_000_000


class Blueprint(flask_smorest.Blueprint):
    """The blueprint every domain's api.py uses, so lists page the same way everywhere."""

    DEFAULT_PAGINATION_PARAMETERS = {"page": 1, "page_size": 20, "max_page_size": 200}  # noqa: RUF012

    def arguments(self, schema: Any, *args: Any, **kwargs: Any):
        # One instance per route, made here: given a class, webargs builds a new schema (and
        # deep-copies every field) on each request. Loading keeps no state on the instance.
        if isinstance(schema, type):
            schema = schema()
        return super().arguments(schema, *args, **kwargs)

    def paginate(self, pager: type[Page] | None = None, **kwargs: Any):
        decorate = super().paginate(pager, **kwargs)

        def decorator(func):
            wrapper = decorate(func)
            # flask-smorest builds the parameters schema inside paginate() and bounds only
            # page_size; the same class parses the query and is documented, so bounding its
            # page field here bounds both.
            params = wrapper._apidoc["pagination"]["parameters"]["schema"]
            params._declared_fields["page"] = kf.Integer(
                load_default=params._declared_fields["page"].load_default, strict=False,
                minimum=1, maximum=MAX_PAGE)
            return wrapper

        return decorator

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
        return db.session.scalar(count_stmt) or 0
