"""Periodic clean-up: uploads started and never finished lose their rows and their objects."""

from __future__ import annotations

from datetime import timedelta

from koc.core.db import utcnow
from koc.core.storage import get_storage
from koc.extensions import db


def test_abandoned_asset_uploads_and_unclaimed_media_are_cleared(app, staff_api,
                                                                 member_api) -> None:
    from koc.assets.models import Asset
    from koc.assets.tasks import clear_abandoned_uploads
    from koc.submissions.models import MediaUpload
    from koc.submissions.tasks import clear_unattached_media

    admin = staff_api("admin")
    kit = admin.post("/kits", json={"title": "k"}).json
    spec = {"filename": "a.png", "content_type": "image/png", "size": 4}
    old_asset = admin.post(f"/kits/{kit['id']}/assets", json=spec).json["asset_id"]
    new_asset = admin.post(f"/kits/{kit['id']}/assets", json=spec).json["asset_id"]
    _, member = member_api()
    old_media = member.post("/uploads", json=spec).json["upload_id"]

    with app.app_context():
        storage = get_storage()
        old = db.session.get(Asset, old_asset)
        storage.put_bytes(old.storage_key, b"half", content_type="image/png")
        old.created_at = utcnow() - timedelta(days=3)
        db.session.get(MediaUpload, old_media).created_at = utcnow() - timedelta(days=3)
        db.session.commit()
        key = old.storage_key

        assert clear_abandoned_uploads.run() == 1
        assert clear_unattached_media.run() == 1
        assert clear_abandoned_uploads.run() == 0  # a second run finds nothing
        assert db.session.get(Asset, old_asset) is None
        assert db.session.get(Asset, new_asset) is not None
        assert db.session.get(MediaUpload, old_media) is None
        assert storage.head(key) is None
