"""Watermarks: while a kit's embargo lasts, each member downloads their own copy of an image
with a code printed on it, made once and kept; a leaked copy names its member by that code, or
by its SHA-256 when the copy is byte-identical.
"""

from __future__ import annotations

import hashlib
import io
import secrets

import sqlalchemy as sa
from PIL import Image, ImageDraw, ImageFont

from koc.assets.models import Asset, Watermark
from koc.assets.services.uploads import MARKABLE_TYPES, current_asset
from koc.core import media
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.storage import Storage
from koc.extensions import db
from koc.members.models import Member

_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I to misread on a photo


def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def _existing(asset: Asset, member: Member) -> Watermark | None:
    return db.session.scalar(sa.select(Watermark).where(
        Watermark.asset_id == asset.id, Watermark.member_id == member.id))


def watermark_for(asset: Asset, member: Member) -> Watermark:
    """The member's marked copy of the asset, its row created (not yet its object) if new."""
    existing = _existing(asset, member)
    if existing is not None:
        return existing
    code = _new_code()
    mark = Watermark(asset_id=asset.id, member_id=member.id, code=code,
                     storage_key=f"kits/{asset.kit_id}/marked/{asset.id}/{code}."
                                 f"{MARKABLE_TYPES[asset.content_type]}")
    try:
        with db.session.begin_nested():
            db.session.add(mark)
    except sa.exc.IntegrityError:
        # A parallel request made it first; use theirs.
        theirs = _existing(asset, member)
        if theirs is None:
            raise
        return theirs
    return mark


def mark_image(image: Image.Image, text: str) -> Image.Image:
    """The image with `text` on a dark band in its bottom-right corner, legible at any size."""
    base = image.convert("RGBA")
    size = max(14, base.width // 28)
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(4, size // 3)
    x = base.width - (right - left) - 2 * pad
    y = base.height - (bottom - top) - 2 * pad
    draw.rectangle((x, y, base.width, base.height), fill=(0, 0, 0, 150))
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=(255, 255, 255, 235))
    return Image.alpha_composite(base, overlay)


def make_marked_copy(watermark_id: int, *, storage: Storage, text_template: str) -> str | None:
    """Store one member's marked copy of an image, once; its key, or None if it cannot be made.

    `text_template` is the text printed on the copy, with `{code}` and `{member_id}`.
    """
    mark = db.session.get(Watermark, watermark_id)
    if mark is None:
        return None
    if mark.ready_at is not None:
        return mark.storage_key
    asset = current_asset(mark.asset_id, storage=storage)
    if asset is None:
        return None
    text = text_template.format(code=mark.code, member_id=mark.member_id)
    with media.spool(storage, asset.storage_key) as source, \
            media.open_image(source) as image:
        fmt = image.format or "PNG"
        marked = mark_image(image, text)
    out = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        marked.convert("RGB").save(out, fmt, quality=92)
    elif fmt == "GIF":
        marked.convert("RGB").save(out, "GIF")
    else:
        marked.save(out, "PNG")
    data = out.getvalue()
    storage.put_bytes(mark.storage_key, data, content_type=asset.content_type)
    mark.sha256 = hashlib.sha256(data).hexdigest()
    mark.ready_at = utcnow()
    db.session.flush()
    return mark.storage_key


def find_leak(*, code: str | None = None, sha256: str | None = None) -> Watermark:
    if code:
        query = sa.select(Watermark).where(Watermark.code == code.strip().upper())
    elif sha256:
        query = sa.select(Watermark).where(Watermark.sha256 == sha256.strip().lower())
    else:
        raise DomainError(422, "Give the code printed on the copy or its SHA-256.",
                          errors={"query": {"code": ["code or sha256 is required"]}})
    mark = db.session.scalar(query.limit(1))
    if mark is None:
        raise DomainError(404, "No copy was issued with that mark.")
    return mark
