"""Signals through which a lower domain lets the ones above it react, without importing them.

Domains stack members < assets < submissions < tiers: members cannot call tiers, so it sends a
signal here and tiers answers it (`koc.tiers.services` connects its receivers when imported, which
`create_app` does for every domain). Receivers run in the sender's transaction.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

member_status_changed = _signals.signal(
    "member-status-changed",
    doc="A member was suspended or re-activated; sent with `member_id` after the flush.",
)
