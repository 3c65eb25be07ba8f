"""The kits' part of exporting a person: the download links issued to them, and the watermark
codes printed on their copies of embargoed images.

Downloads hold no personal data beyond who fetched what, which the funnel statistics count; a
forgotten member's rows stay, attached to the anonymous member row (a leaked copy then names
only that anonymous row).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from koc.assets.models import Download, Watermark
from koc.core.signals import person_export_requested
from koc.extensions import db
from koc.members.models import Member


@person_export_requested.connect
def _export_downloads(_sender: object, *, member: Member, **_: object) -> dict[str, Any]:
    rows = db.session.scalars(sa.select(Download).where(Download.member_id == member.id)
                              .order_by(Download.id)).all()
    marks = db.session.scalars(sa.select(Watermark).where(Watermark.member_id == member.id)
                               .order_by(Watermark.id)).all()
    return {"downloads": [{"id": d.id, "kit_id": d.kit_id, "asset_id": d.asset_id,
                           "issued_at": d.issued_at, "expires_at": d.expires_at}
                          for d in rows],
            "watermarks": [{"asset_id": w.asset_id, "code": w.code, "created_at": w.created_at}
                           for w in marks]}
