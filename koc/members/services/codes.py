"""Invitation codes: derived from the invitation's id, never stored.

A code is `<id>.<mac>`: the invitation id and 16 bytes of HMAC-SHA256 of it under a key derived
from KOC_SECRET_KEY (base64url, 22 characters). A database copy therefore reveals no code;
100,000 invitations are one INSERT ... SELECT (the database has nothing to compute per row);
and an admin can list a campaign's links again after creation (each listing audited). A code
is checked in constant time; revoking is a column on its row. Codes issued before this scheme
were random strings stored as their SHA-256 (`Invitation.code_hash`) and still work.

Rotating KOC_SECRET_KEY ends every open link; issue new ones (a campaign is cheap to rerun).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from flask import current_app

_PURPOSE = b"koc.members.invitation-code.v1"
_MAC_BYTES = 16


def _key() -> bytes:
    key = current_app.extensions.get("koc.invitation_key")
    if key is None:
        secret = current_app.config["KOC_SETTINGS"].secret_key.encode()
        key = current_app.extensions.setdefault(
            "koc.invitation_key", hmac.new(secret, _PURPOSE, hashlib.sha256).digest())
    return key


def _mac(invitation_id: int) -> str:
    digest = hmac.new(_key(), str(invitation_id).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_MAC_BYTES]).rstrip(b"=").decode()


def code_for(invitation_id: int) -> str:
    return f"{invitation_id}.{_mac(invitation_id)}"


def invitation_id_of(code: str) -> int | None:
    """The invitation a derived code names, or None (not one, or its mac is wrong)."""
    head, dot, mac = code.partition(".")
    if not dot or not head.isdigit() or len(head) > 19 or head.startswith("0"):
        return None
    invitation_id = int(head)
    return invitation_id if hmac.compare_digest(mac, _mac(invitation_id)) else None


def legacy_hash(code: str) -> str:
    """How a code issued before derived codes is kept: its SHA-256, hex."""
    return hashlib.sha256(code.encode()).hexdigest()


def join_url(code: str) -> str:
    base = (current_app.config["KOC_SETTINGS"].public_url or "").rstrip("/")
    return f"{base}/join/{code}"
