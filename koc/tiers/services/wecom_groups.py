"""The senior group and the KOC groups in WeCom: join methods, the roster from callbacks, and
kit announcements as group messages.

- Each senior invitation gets its own "join group" method (`add_join_way`, a QR code) whose
  `state` names the member; WeCom returns that state on the member's entry of `groupchat/get`,
  so a join is attributed without asking anyone who they are.
- `change_external_chat` callbacks say that a group changed; the roster is then reconciled from
  `groupchat/get`, the source of truth, so a lost, repeated or reordered callback converges to
  the same state. A member due for removal who is no longer in the group is removed (and their
  join method deleted); one who left on their own while still qualifying is shown as `left`.
- Kit announcements are drafted, confirmed by an admin in a second step, then created as
  `add_msg_template` tasks per group owner; WeCom asks each owner to confirm sending. A group
  receives at most `daily_limit` group messages per day (China time), counted in the database
  with a unique key, so two confirmations racing each other cannot both use a slot.

The WeCom client is passed in (koc.core.wecom.client.WeComClient); services never build one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.errors import DomainError, field_error
from koc.extensions import db
from koc.tiers.models import GroupMembership, GroupMessageSend, KitAnnouncement
from koc.tiers.services.groups import SENIOR_GROUP

STATE_MAX = 30
CHINA = timedelta(hours=8)
MAX_TEXT = 2000
JOIN_WAYS_PER_RUN = 200


class WeComApi(Protocol):
    def add_join_way(self, *, chat_ids: list[str], state: str, remark: str,
                     room_base_name: str | None = None) -> str: ...

    def get_join_way(self, config_id: str) -> dict[str, Any]: ...

    def del_join_way(self, config_id: str) -> None: ...

    def group_chat(self, chat_id: str) -> dict[str, Any]: ...

    def add_msg_template(self, *, sender: str, chat_ids: list[str], text: str
                         ) -> dict[str, Any]: ...


def state_for(membership: GroupMembership) -> str:
    """`m<member id>.<seat id>`: names the member, unique per invitation, under 30 characters."""
    state = f"m{membership.member_id}.{membership.id}"
    assert len(state) <= STATE_MAX
    return state


def member_of_state(state: str | None) -> int | None:
    if not state or not state.startswith("m") or "." not in state:
        return None
    head = state[1:].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _live() -> sa.ColumnElement[bool]:
    return sa.and_(GroupMembership.group_key == SENIOR_GROUP, GroupMembership.removed_at.is_(None))


def create_join_ways(client: WeComApi, chat_ids: list[str], *, limit: int = JOIN_WAYS_PER_RUN,
                     room_base_name: str | None = None) -> int:
    """A join method for every invited member who has none yet; returns how many were made.

    The state is written (and flushed) before WeCom is called, so a retried run after a crash
    reuses the same state rather than inventing a second one."""
    if not chat_ids:
        raise DomainError(409, "No senior group chats are configured (KOC_WECOM_SENIOR_CHAT_IDS).")
    rows = db.session.scalars(
        sa.select(GroupMembership).where(_live(), GroupMembership.removal_due_at.is_(None),
                                         GroupMembership.wecom_config_id.is_(None))
        .order_by(GroupMembership.id).limit(limit)).all()
    for row in rows:
        row.wecom_state = row.wecom_state or state_for(row)
        db.session.flush()
        config_id = client.add_join_way(chat_ids=chat_ids[:5], state=row.wecom_state,
                                        remark=f"KOC senior {row.member_id}",
                                        room_base_name=room_base_name)
        row.wecom_config_id = config_id
        row.wecom_qr_url = client.get_join_way(config_id).get("qr_code")
        db.session.flush()
    return len(rows)


def _from_epoch(value: Any, fallback: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (TypeError, ValueError, OverflowError):
        return fallback


def reconcile_chat(client: WeComApi, chat_id: str, *, now: datetime | None = None,
                   quit_scene: int | None = None) -> dict[str, int]:
    """Bring the roster in line with the group's member list; returns what changed.

    `quit_scene` comes from a del_member callback (0 left on their own, 1 removed by the
    owner or an admin) and is recorded on those found gone; a plain reconcile leaves it unset."""
    now = now or utcnow()
    group = client.group_chat(chat_id)
    # type 2: external contacts (the KOCs); type 1 are the brand's own staff.
    present = {str(m["userid"]): m for m in group.get("member_list", [])
               if int(m.get("type", 2)) == 2 and m.get("userid")}
    by_state = {str(m["state"]): m for m in present.values() if m.get("state")}
    changed = {"joined": 0, "left": 0, "removed": 0}

    if by_state:
        for row in db.session.scalars(sa.select(GroupMembership).where(
                _live(), GroupMembership.wecom_state.in_(list(by_state)))):
            entry = by_state[row.wecom_state or ""]
            back = row.left_at is not None
            if row.joined_at is None or back or row.wecom_chat_id != chat_id:
                changed["joined"] += 1
                row.joined_at = _from_epoch(entry.get("join_time"), now)
            row.wecom_userid = str(entry["userid"])
            row.wecom_chat_id = chat_id
            row.join_scene = int(entry["join_scene"]) if entry.get("join_scene") else None
            row.left_at = None
            row.quit_scene = None

    gone = db.session.scalars(sa.select(GroupMembership).where(
        _live(), GroupMembership.wecom_chat_id == chat_id, GroupMembership.joined_at.is_not(None),
        GroupMembership.left_at.is_(None),
        GroupMembership.wecom_userid.not_in(list(present) or [""]))).all()
    for row in gone:
        row.left_at = now
        row.quit_scene = quit_scene
        changed["left"] += 1
        if row.removal_due_at is not None:
            # On the removal list and out of the group: nothing left for staff to do.
            row.removed_at = now
            changed["removed"] += 1
            if row.wecom_config_id:
                client.del_join_way(row.wecom_config_id)
    db.session.flush()
    return changed


def handle_event(client: WeComApi, event: dict[str, str], *, now: datetime | None = None,
                 senior_chat_ids: tuple[str, ...] = ()) -> dict[str, int] | None:
    """One decrypted callback event; None when it is not about a group the programme watches."""
    if event.get("Event") != "change_external_chat":
        return None
    chat_id = event.get("ChatId", "")
    # A join may land in a chat not configured (one WeCom opened when a group was full), so
    # every add_member is looked at; other changes only where the programme has seats.
    watched = (chat_id in senior_chat_ids or event.get("UpdateDetail") == "add_member"
               or _known_chat(chat_id))
    if not chat_id or not watched:
        return None
    quit_scene = None
    if event.get("UpdateDetail") == "del_member" and event.get("QuitScene", "").isdigit():
        quit_scene = int(event["QuitScene"])
    if event.get("ChangeType") == "dismiss":
        # The group is gone: groupchat/get would fail; everyone in it has left.
        return _dismissed(chat_id, now or utcnow())
    return reconcile_chat(client, chat_id, now=now, quit_scene=quit_scene)


def _known_chat(chat_id: str) -> bool:
    return (db.session.scalar(sa.select(sa.func.count()).select_from(GroupMembership).where(
        GroupMembership.wecom_chat_id == chat_id)) or 0) > 0


def _dismissed(chat_id: str, now: datetime) -> dict[str, int]:
    rows = db.session.scalars(sa.select(GroupMembership).where(
        _live(), GroupMembership.wecom_chat_id == chat_id,
        GroupMembership.left_at.is_(None))).all()
    for row in rows:
        row.left_at = now
        if row.removal_due_at is not None:
            row.removed_at = now
    db.session.flush()
    return {"joined": 0, "left": len(rows), "removed": 0}


def roster_states() -> list[GroupMembership]:
    """Every seat of the senior group still of interest, oldest invitation first."""
    return list(db.session.scalars(sa.select(GroupMembership).where(
        GroupMembership.group_key == SENIOR_GROUP).order_by(GroupMembership.invited_at,
                                                            GroupMembership.id)))


# --- kit announcements -------------------------------------------------------------------------

def china_day(moment: datetime) -> date:
    return (moment.astimezone(UTC) + CHINA).date()


def draft_announcement(kit_id: int, *, text: str, chat_ids: list[str], staff_id: int | None
                       ) -> KitAnnouncement:
    if not text.strip():
        raise field_error(422, "text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise field_error(422, "text", f"must be at most {MAX_TEXT} characters")
    if not chat_ids:
        raise field_error(422, "chat_ids", "no KOC groups given or configured")
    row = KitAnnouncement(kit_id=kit_id, text=text, chat_ids=list(dict.fromkeys(chat_ids)),
                          status="draft", created_by_staff_id=staff_id)
    db.session.add(row)
    db.session.flush()
    return row


def get_announcement(announcement_id: int) -> KitAnnouncement:
    row = db.session.get(KitAnnouncement, announcement_id)
    if row is None:
        raise DomainError(404, "No such announcement.")
    return row


def _take_slot(announcement: KitAnnouncement, chat_id: str, day: date, limit: int) -> bool:
    used = db.session.scalar(sa.select(sa.func.count()).select_from(GroupMessageSend).where(
        GroupMessageSend.chat_id == chat_id, GroupMessageSend.sent_on == day)) or 0
    if used >= limit:
        return False
    try:
        with db.session.begin_nested():
            db.session.add(GroupMessageSend(chat_id=chat_id, sent_on=day, slot=used + 1,
                                            announcement_id=announcement.id))
            db.session.flush()
    except IntegrityError:
        return False  # taken by a concurrent confirmation
    return True


def send_announcement(client: WeComApi, announcement: KitAnnouncement, *, staff_id: int,
                      daily_limit: int, now: datetime | None = None) -> KitAnnouncement:
    """The confirmation step: create the group-message tasks for the groups with a slot today."""
    if announcement.status != "draft":
        raise DomainError(409, "This announcement has been confirmed already.")
    now = now or utcnow()
    day = china_day(now)
    allowed = [c for c in announcement.chat_ids if _take_slot(announcement, c, day, daily_limit)]
    skipped = [c for c in announcement.chat_ids if c not in allowed]
    by_owner: dict[str, list[str]] = defaultdict(list)
    for chat_id in allowed:
        by_owner[str(client.group_chat(chat_id)["owner"])].append(chat_id)
    tasks: list[dict[str, Any]] = []
    for owner, chats in by_owner.items():
        try:
            answer = client.add_msg_template(sender=owner, chat_ids=chats,
                                             text=announcement.text)
        except RuntimeError as exc:  # WeComError, or the network
            tasks.append({"sender": owner, "chat_ids": chats, "error": str(exc)[:300]})
            # Nothing was sent to these groups: give their slots back.
            db.session.execute(sa.delete(GroupMessageSend).where(
                GroupMessageSend.announcement_id == announcement.id,
                GroupMessageSend.chat_id.in_(chats)))
            continue
        tasks.append({"sender": owner, "chat_ids": chats, "msgid": answer.get("msgid"),
                      "fail_list": answer.get("fail_list", [])})
    announcement.tasks = tasks
    announcement.skipped_chat_ids = skipped
    announcement.confirmed_by_staff_id = staff_id
    announcement.confirmed_at = now
    sent = any("msgid" in t for t in tasks)
    announcement.status = "sent" if sent else "failed"
    if not sent:
        announcement.error = ("every group has had its group message today" if not tasks
                              else "WeCom refused every task")
    db.session.flush()
    return announcement
