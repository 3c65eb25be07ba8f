"""WeCom against the fake server (tests/tiers/wecom_fake.py): join methods whose state names
the member, the roster reconciled from signed, encrypted change_external_chat callbacks, kit
announcements with the daily limit, and the access token refreshed and retried."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from koc.core.auth import create_staff
from koc.core.wecom.client import WeComClient, WeComError, forget_tokens
from koc.core.wecom.crypto import CallbackError, MessageCrypto, signature
from koc.extensions import db
from koc.tiers.models import GroupMembership
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.conftest import Api, new_member, staff_token_for
from tests.portal.conftest import form_csrf
from tests.tiers.wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, FakeWeCom, running_fake

SENIOR_CHAT = "wrSeniorChat0001"
KOC_CHATS = ("wrKocChat0001", "wrKocChat0002")
CALLBACK = "/wecom/callback"


@pytest.fixture
def fake() -> Iterator[FakeWeCom]:
    forget_tokens()
    with running_fake() as server:
        server.add_group(SENIOR_CHAT, owner="zhangsan")
        server.add_group(KOC_CHATS[0], owner="zhangsan")
        server.add_group(KOC_CHATS[1], owner="lisi")
        yield server
    forget_tokens()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def wecom_app(request, make_app: Callable[..., Flask], fake: FakeWeCom) -> Flask:
    database = ({"KOC_DATABASE_URL": request.getfixturevalue("postgres_url")}
                if request.param == "postgres" else {})
    return make_app(**database, KOC_WECOM_CORP_ID=CORP_ID, KOC_WECOM_AGENT_SECRET=SECRET,
                    KOC_WECOM_CALLBACK_TOKEN=TOKEN, KOC_WECOM_AES_KEY=AES_KEY,
                    KOC_WECOM_API_URL=fake.url, KOC_WECOM_SENIOR_CHAT_IDS=SENIOR_CHAT,
                    KOC_WECOM_KOC_CHAT_IDS=",".join(KOC_CHATS))


@pytest.fixture
def admin(wecom_app: Flask) -> Api:
    return Api(wecom_app.test_client(), staff_token_for(wecom_app, "admin"))


def senior_member(app: Flask, admin: Api, external_id: str) -> tuple[int, Api]:
    member_id, api = new_member(app, admin, external_id)
    promoted = admin.patch(f"/members/{member_id}", json={"tier": "senior",
                                                          "reason": "one viral note"})
    assert promoted.status_code == 200, promoted.json
    return member_id, api


def portal_page(app: Flask, token: str, path: str) -> str:
    client = app.test_client()
    page = client.get("/m/")  # signed out: still carries the form CSRF token
    assert client.post("/m/session", json={"token": token},
                       headers={"X-CSRFToken": form_csrf(page.text)}).status_code == 200
    return client.get(path).text


def change_event(update: str, *, join_scene: int = 3, quit_scene: int = 0,
                 userids: tuple[str, ...] = ()) -> str:
    detail = (f"<JoinScene>{join_scene}</JoinScene>" if update == "add_member"
              else f"<QuitScene>{quit_scene}</QuitScene>")
    changes = "".join(f"<Item><![CDATA[{u}]]></Item>" for u in userids)
    return ("<xml><ToUserName><![CDATA[" + CORP_ID + "]]></ToUserName>"
            "<FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1796000100</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_chat]]></Event>"
            f"<ChatId><![CDATA[{SENIOR_CHAT}]]></ChatId><ChangeType><![CDATA[update]]></ChangeType>"
            f"<UpdateDetail><![CDATA[{update}]]></UpdateDetail>{detail}"
            f"<MemChangeCnt>{len(userids)}</MemChangeCnt>"
            f"<MemChangeList>{changes}</MemChangeList></xml>")


def post_callback(client: FlaskClient, event_xml: str, *, tamper: bool = False):
    crypto = MessageCrypto(TOKEN, AES_KEY, CORP_ID)
    timestamp, nonce = "1796000100", "n0nce42"
    encrypted, msg_signature = crypto.seal(event_xml, timestamp, nonce)
    if tamper:
        msg_signature = signature("not-the-token", timestamp, nonce, encrypted)
    body = (f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
            f"<AgentID><![CDATA[1000002]]></AgentID><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
    return client.post(f"{CALLBACK}?msg_signature={msg_signature}&timestamp={timestamp}"
                       f"&nonce={nonce}", data=body, content_type="text/xml")


def seat_of(app: Flask, member_id: int) -> GroupMembership:
    with app.app_context():
        row = db.session.query(GroupMembership).filter_by(member_id=member_id).one()
        db.session.expunge(row)
        return row


def roster_ids(admin: Api) -> dict[str, list[tuple[int, str]]]:
    roster = admin.get("/groups/senior/roster")
    assert roster.status_code == 200, roster.json
    return {key: [(row["member_id"], row["state"]) for row in rows]
            for key, rows in roster.json.items()}


def test_a_senior_members_join_is_attributed_from_the_join_methods_state(
        wecom_app: Flask, admin: Api, fake: FakeWeCom):
    member_id, member = senior_member(wecom_app, admin, "senior-1")
    synced = admin.post("/groups/senior/wecom/sync")
    assert synced.status_code == 200, synced.json
    assert synced.json["join_ways_created"] == 1
    seat = seat_of(wecom_app, member_id)
    assert seat.wecom_state is not None and len(seat.wecom_state) <= 30
    assert seat.wecom_state.startswith(f"m{member_id}.")
    way = fake.join_ways[seat.wecom_config_id]
    assert way["state"] == seat.wecom_state and way["chat_id_list"] == [SENIOR_CHAT]
    mine = member.get("/me/groups").json["groups"][0]
    assert mine["qr_code_url"] == way["qr_code"] and mine["state"] == "invited"
    # The portal's group page shows the same QR code.
    assert f'src="{way["qr_code"]}"' in portal_page(wecom_app, member.token, "/m/group")
    # A second sync makes no second join method.
    assert admin.post("/groups/senior/wecom/sync").json["join_ways_created"] == 0

    # The member scans the QR code; someone else is added directly, with no state.
    fake.join(SENIOR_CHAT, "wmKocUserA", config_id=seat.wecom_config_id)
    fake.join(SENIOR_CHAT, "wmStranger", join_scene=1)
    answered = post_callback(wecom_app.test_client(),
                             change_event("add_member", userids=("wmKocUserA", "wmStranger")))
    assert answered.status_code == 200 and answered.text == "success"

    seat = seat_of(wecom_app, member_id)
    assert (seat.state, seat.wecom_userid, seat.join_scene) == ("joined", "wmKocUserA", 3)
    assert roster_ids(admin)["members"] == [(member_id, "joined")]
    # The same callback again changes nothing.
    post_callback(wecom_app.test_client(), change_event("add_member", userids=("wmKocUserA",)))
    assert roster_ids(admin)["members"] == [(member_id, "joined")]


def test_a_demoted_member_leaves_the_removal_list_when_the_callback_says_they_left(
        wecom_app: Flask, admin: Api, fake: FakeWeCom):
    member_id, _member = senior_member(wecom_app, admin, "senior-2")
    stays_id, _ = senior_member(wecom_app, admin, "senior-3")
    admin.post("/groups/senior/wecom/sync")
    for mid, userid in ((member_id, "wmLeaver"), (stays_id, "wmStayer")):
        fake.join(SENIOR_CHAT, userid, config_id=seat_of(wecom_app, mid).wecom_config_id)
    post_callback(wecom_app.test_client(), change_event("add_member"))

    demoted = admin.patch(f"/members/{member_id}", json={"tier": "certified",
                                                         "reason": "weak notes"})
    assert demoted.status_code == 200
    assert roster_ids(admin)["to_remove"] == [(member_id, "to_be_removed")]

    config_id = seat_of(wecom_app, member_id).wecom_config_id
    fake.leave(SENIOR_CHAT, "wmLeaver")
    answered = post_callback(wecom_app.test_client(),
                             change_event("del_member", quit_scene=0, userids=("wmLeaver",)))
    assert answered.status_code == 200

    roster = roster_ids(admin)
    assert roster["to_remove"] == []
    assert roster["removed"] == [(member_id, "removed")]
    assert roster["members"] == [(stays_id, "joined")]
    seat = seat_of(wecom_app, member_id)
    assert seat.left_on_own and seat.removed_at is not None
    # Their QR code no longer lets anyone in.
    assert config_id not in fake.join_ways


def test_a_qualifying_member_who_leaves_on_their_own_is_shown_as_left(
        wecom_app: Flask, admin: Api, fake: FakeWeCom):
    member_id, _ = senior_member(wecom_app, admin, "senior-4")
    admin.post("/groups/senior/wecom/sync")
    fake.join(SENIOR_CHAT, "wmQuiet", config_id=seat_of(wecom_app, member_id).wecom_config_id)
    post_callback(wecom_app.test_client(), change_event("add_member"))
    fake.leave(SENIOR_CHAT, "wmQuiet")
    post_callback(wecom_app.test_client(), change_event("del_member", quit_scene=0))
    assert roster_ids(admin)["left"] == [(member_id, "left")]


def test_a_callback_with_a_bad_signature_is_refused_and_changes_nothing(
        wecom_app: Flask, admin: Api, fake: FakeWeCom):
    member_id, _ = senior_member(wecom_app, admin, "senior-5")
    admin.post("/groups/senior/wecom/sync")
    fake.join(SENIOR_CHAT, "wmForged", config_id=seat_of(wecom_app, member_id).wecom_config_id)
    calls = len(fake.calls)
    refused = post_callback(wecom_app.test_client(), change_event("add_member"), tamper=True)
    assert refused.status_code == 403
    assert seat_of(wecom_app, member_id).state == "invited"
    assert len(fake.calls) == calls  # nothing was even asked of WeCom
    assert wecom_app.test_client().post(CALLBACK, data="<xml/>").status_code == 400


def test_the_callback_url_verification_echoes_the_decrypted_echostr(wecom_app: Flask):
    crypto = MessageCrypto(TOKEN, AES_KEY, CORP_ID)
    echostr, msg_signature = crypto.seal("1616140317555161061", "1796000000", "abc")
    client = wecom_app.test_client()
    query = {"msg_signature": msg_signature, "timestamp": "1796000000", "nonce": "abc",
             "echostr": echostr}
    answered = client.get(CALLBACK, query_string=query)
    assert answered.status_code == 200 and answered.text == "1616140317555161061"
    assert client.get(CALLBACK, query_string={**query, "nonce": "xyz"}).status_code == 403


def test_crypto_refuses_a_message_for_another_corp():
    sealed = MessageCrypto(TOKEN, AES_KEY, "wwOtherCorp").encrypt("<xml/>")
    with pytest.raises(CallbackError):
        MessageCrypto(TOKEN, AES_KEY, CORP_ID).decrypt(sealed)
    assert MessageCrypto(TOKEN, AES_KEY, CORP_ID).decrypt(
        MessageCrypto(TOKEN, AES_KEY, CORP_ID).encrypt("你好 KOC")) == "你好 KOC"


def test_the_access_token_is_cached_refreshed_when_expired_and_busy_calls_retried(
        fake: FakeWeCom):
    waits: list[float] = []
    client = WeComClient(api_url=fake.url, corp_id=CORP_ID, secret=SECRET, sleep=waits.append)
    client.group_chat(SENIOR_CHAT)
    client.group_chat(SENIOR_CHAT)
    assert fake.tokens_issued == 1  # cached, not fetched per call

    fake.expire_tokens()  # 42001 on the next call: fetched again, call retried
    assert client.group_chat(SENIOR_CHAT)["owner"] == "zhangsan"
    assert fake.tokens_issued == 2

    fake.busy = 2  # errcode -1 twice: backoff, then success
    assert client.group_chat(SENIOR_CHAT)["owner"] == "zhangsan"
    assert waits == [0.5, 1.0]

    fake.busy = 10
    with pytest.raises(WeComError) as refused:
        client.group_chat(SENIOR_CHAT)
    assert refused.value.errcode == -1


def test_a_kit_announcement_is_confirmed_then_sent_once_a_day_per_group(
        wecom_app: Flask, admin: Api, fake: FakeWeCom, time_machine):
    # Late in the evening, China time: the day's slot is spent, the next day's is not.
    time_machine.move_to("2026-12-02T23:50:00+08:00", tick=False)
    kit = admin.post("/kits", json={"title": "春季新品"})
    assert kit.status_code == 201
    draft = admin.post(f"/kits/{kit.json['id']}/announcements",
                       json={"text": "新素材包已上线，快去下载！"})  # noqa: RUF001
    assert draft.status_code == 201, draft.json
    assert draft.json["status"] == "draft" and fake.msg_templates == []

    sent = admin.post(f"/announcements/{draft.json['id']}/send")
    assert sent.status_code == 200, sent.json
    assert sent.json["status"] == "sent" and sent.json["skipped_chat_ids"] == []
    # One task per group owner, each naming its groups.
    assert sorted((m["sender"], tuple(m["chat_id_list"])) for m in fake.msg_templates) == [
        ("lisi", (KOC_CHATS[1],)), ("zhangsan", (KOC_CHATS[0],))]
    assert admin.post(f"/announcements/{draft.json['id']}/send").status_code == 409

    again = admin.post(f"/kits/{kit.json['id']}/announcements", json={"text": "再提醒一次"})
    resent = admin.post(f"/announcements/{again.json['id']}/send")
    assert resent.json["status"] == "failed"
    assert sorted(resent.json["skipped_chat_ids"]) == sorted(KOC_CHATS)
    assert len(fake.msg_templates) == 2

    time_machine.move_to("2026-12-03T00:05:00+08:00", tick=False)
    tomorrow = admin.post(f"/kits/{kit.json['id']}/announcements", json={"text": "新的一天"})
    assert admin.post(f"/announcements/{tomorrow.json['id']}/send").json["status"] == "sent"
    assert len(fake.msg_templates) == 4


def test_wecom_routes_say_so_when_wecom_is_not_configured(staff_api: Callable[[str], Any]):
    assert staff_api("admin").post("/groups/senior/wecom/sync").status_code == 409


def test_changes_in_groups_without_senior_seats_are_not_looked_up(
        wecom_app: Flask, fake: FakeWeCom):
    event = change_event("del_member").replace(SENIOR_CHAT, KOC_CHATS[0])
    calls = len(fake.calls)
    assert post_callback(wecom_app.test_client(), event).text == "success"
    assert fake.calls[calls:] == []


def test_a_manager_drafts_and_confirms_an_announcement_in_the_admin_panel(
        wecom_app: Flask, admin: Api, fake: FakeWeCom):
    kit_id = admin.post("/kits", json={"title": "夏季新品"}).json["id"]
    with wecom_app.app_context():
        create_staff(email="manager@example.com", role="admin", password=PASSWORD)
        db.session.commit()
    panel = wecom_app.test_client()
    assert login(panel, "manager@example.com").status_code == 302
    page = panel.get("/admin/announcements")
    assert page.status_code == 200
    drafted = panel.post("/admin/announcements", data={
        "csrf_token": csrf_token(page.text), "kit_id": str(kit_id), "text": "夏季素材上线"})
    assert drafted.status_code == 302
    assert fake.msg_templates == []  # a draft sends nothing
    page = panel.get("/admin/announcements")
    assert 'data-status="draft"' in page.text
    announcement_id = admin.get("/announcements/1").json["id"]
    sent = panel.post(f"/admin/announcements/{announcement_id}/send",
                      data={"csrf_token": csrf_token(page.text)})
    assert sent.status_code == 302
    assert 'data-status="sent"' in panel.get("/admin/announcements").text
    assert {m["text"]["content"] for m in fake.msg_templates} == {"夏季素材上线"}
