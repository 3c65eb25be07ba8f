"""Signals through which a lower domain lets the ones above it react, without importing them.

Domains stack members < assets < submissions < tiers: members cannot call tiers, so it sends a
signal here and tiers answers it. Receivers connect when their module is imported, which
`create_app` does through each domain's api.py (`koc.tiers.api` imports the tiers services that
answer `member_status_changed`, and answers the member view signals itself). Receivers run in the
sender's transaction.
"""

from __future__ import annotations

from typing import Any

from blinker import NamedSignal, Namespace

_signals = Namespace()

member_status_changed = _signals.signal(
    "member-status-changed",
    doc="A member was suspended or re-activated; sent with `member_id` after the flush.",
)

# A member's views are served by the members blueprint, but some of their fields belong to the
# domains above: those answer these signals with the fields they add (see `replies`).
member_view_requested = _signals.signal(
    "member-view-requested",
    doc="GET /me is answering a member; sent with `member`. Each receiver returns a dict of the "
        "fields it adds (the tiers package adds tier, badges, progress and points).",
)
member_detail_requested = _signals.signal(
    "member-detail-requested",
    doc="Staff are shown a member (GET or PATCH /members/{id}); sent with `member`. Each "
        "receiver returns a dict of the fields it adds (the tiers package adds tier_history).",
)
member_tier_set = _signals.signal(
    "member-tier-set",
    doc="Staff set a member's tier or its lock (PATCH /members/{id}); sent with `member`, "
        "`tier_key`, `locked`, `staff_id` and `reason`. The tiers package applies it, or refuses "
        "with a DomainError.",
)

# Personal data (PIPL): the members package forgets and exports a person; the rows the domains
# above hold about them are theirs to scrub and to describe.
person_forgotten = _signals.signal(
    "person-forgotten",
    doc="A person is being forgotten; sent with `member_id` and `now` after the members package "
        "anonymised its own rows (flushed, not committed). Each receiver blanks the personal "
        "data in its own rows and may enqueue after-commit work (deleting stored media); it must "
        "be safe to run again on a person already forgotten.",
)
person_export_requested = _signals.signal(
    "person-export-requested",
    doc="A person's data is being exported; sent with `member`. Each receiver returns a dict of "
        "the parts it holds (submissions, ledger, downloads, badges, ...), JSON-ready.",
)


def replies(signal: NamedSignal, **kwargs: Any) -> dict[str, Any]:
    """The dicts a signal's receivers return, merged into one."""
    merged: dict[str, Any] = {}
    for _receiver, reply in signal.send(None, **kwargs):
        merged.update(reply)
    return merged
