"""A fake WeCom server: a real HTTP server on a free port speaking the documented endpoints.

The real qyapi.weixin.qq.com cannot be reached from here. Implemented after WeCom's public
developer documentation:
- GET  /cgi-bin/gettoken?corpid&corpsecret -> access_token, expires_in (document/path/91039)
- POST /cgi-bin/externalcontact/groupchat/add_join_way -> config_id (document/path/92229)
- POST /cgi-bin/externalcontact/groupchat/get_join_way -> join_way with qr_code
- POST /cgi-bin/externalcontact/groupchat/del_join_way
- POST /cgi-bin/externalcontact/groupchat/get -> group_chat with owner, member_list
  (userid, type, join_time, join_scene, invitor, state), member_version (document/path/92707)
- POST /cgi-bin/externalcontact/add_msg_template -> msgid, fail_list (document/path/92135)
Every answer carries errcode/errmsg; a bad token is 40014, an expired one 42001, busy is -1.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CORP_ID = "ww0123456789abcdef"
SECRET = "fake-agent-secret"
TOKEN = "callbacktoken"
# A 43-character EncodingAESKey (base64 of 32 bytes without the '=').
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@dataclass
class Group:
    owner: str
    members: list[dict[str, Any]] = field(default_factory=list)
    version: int = 1


@dataclass
class FakeWeCom:
    url: str = ""
    tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    groups: dict[str, Group] = field(default_factory=dict)
    join_ways: dict[str, dict[str, Any]] = field(default_factory=dict)
    msg_templates: list[dict[str, Any]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    busy: int = 0  # the next N calls answer errcode -1
    clock: int = 1_796_000_000

    # --- what a test does to the world ----------------------------------------------------

    def add_group(self, chat_id: str, owner: str = "zhangsan") -> None:
        self.groups[chat_id] = Group(owner=owner, members=[
            {"userid": owner, "type": 1, "join_time": self.clock, "join_scene": 1}])

    def join(self, chat_id: str, userid: str, *, config_id: str | None = None,
             join_scene: int = 3) -> None:
        """Someone scans a join method's QR code (or is invited directly, without a state)."""
        entry: dict[str, Any] = {"userid": userid, "type": 2, "join_time": self.clock,
                                 "join_scene": join_scene, "invitor": {"userid": "zhangsan"}}
        if config_id is not None:
            state = self.join_ways[config_id].get("state")
            if state:
                entry["state"] = state
        group = self.groups[chat_id]
        group.members.append(entry)
        group.version += 1

    def leave(self, chat_id: str, userid: str) -> None:
        group = self.groups[chat_id]
        group.members = [m for m in group.members if m["userid"] != userid]
        group.version += 1

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # --- the protocol ----------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]
               ) -> dict[str, Any]:
        self.calls.append(path)
        if self.busy:
            self.busy -= 1
            return {"errcode": -1, "errmsg": "system busy"}
        if path == "/cgi-bin/gettoken":
            return self._gettoken(query)
        token = query.get("access_token")
        if not token:
            return {"errcode": 41001, "errmsg": "access_token missing"}
        if token not in self.tokens:
            return {"errcode": 42001, "errmsg": "access_token expired"}
        handler = {
            "/cgi-bin/externalcontact/groupchat/add_join_way": self._add_join_way,
            "/cgi-bin/externalcontact/groupchat/get_join_way": self._get_join_way,
            "/cgi-bin/externalcontact/groupchat/del_join_way": self._del_join_way,
            "/cgi-bin/externalcontact/groupchat/get": self._group_get,
            "/cgi-bin/externalcontact/add_msg_template": self._add_msg_template,
        }.get(path)
        if handler is None or method != "POST":
            return {"errcode": 60011, "errmsg": "no privilege to access/modify contact"}
        return handler(body)

    def _gettoken(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("corpid") != CORP_ID or query.get("corpsecret") != SECRET:
            return {"errcode": 40001, "errmsg": "invalid credential"}
        token = secrets.token_hex(16)
        self.tokens.add(token)
        self.tokens_issued += 1
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}

    def _add_join_way(self, body: dict[str, Any]) -> dict[str, Any]:
        state = body.get("state") or ""
        chats = body.get("chat_id_list") or []
        if body.get("scene") not in (1, 2):
            return {"errcode": 40058, "errmsg": "invalid scene"}
        if len(state) > 30 or not 1 <= len(chats) <= 5 or any(c not in self.groups
                                                              for c in chats):
            return {"errcode": 40058, "errmsg": "invalid parameter"}
        config_id = secrets.token_hex(16)
        self.join_ways[config_id] = {**body, "config_id": config_id,
                                     "qr_code": f"https://wework.qpic.cn/wwpic/{config_id}/0"}
        return {"errcode": 0, "errmsg": "ok", "config_id": config_id}

    def _get_join_way(self, body: dict[str, Any]) -> dict[str, Any]:
        way = self.join_ways.get(body.get("config_id", ""))
        if way is None:
            return {"errcode": 41044, "errmsg": "invalid config_id"}
        return {"errcode": 0, "errmsg": "ok", "join_way": way}

    def _del_join_way(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.join_ways.pop(body.get("config_id", ""), None) is None:
            return {"errcode": 41044, "errmsg": "invalid config_id"}
        return {"errcode": 0, "errmsg": "ok"}

    def _group_get(self, body: dict[str, Any]) -> dict[str, Any]:
        group = self.groups.get(body.get("chat_id", ""))
        if group is None:
            return {"errcode": 40050, "errmsg": "chatid not found"}
        return {"errcode": 0, "errmsg": "ok", "group_chat": {
            "chat_id": body["chat_id"], "name": "", "owner": group.owner,
            "create_time": self.clock, "member_list": group.members,
            "member_version": str(group.version)}}

    def _add_msg_template(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("chat_type") != "group" or not body.get("sender"):
            return {"errcode": 41048, "errmsg": "sender required for group messages"}
        msgid = "msg" + secrets.token_hex(8)
        self.msg_templates.append({**body, "msgid": msgid})
        return {"errcode": 0, "errmsg": "ok", "fail_list": [], "msgid": msgid}


def _handler(fake: FakeWeCom) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _respond(self, method: str) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = None
            answer = ({"errcode": 47001, "errmsg": "data format error"} if body is None
                      else fake.answer(method, parts.path, query, body))
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._respond("GET")

        def do_POST(self) -> None:
            self._respond("POST")

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_fake() -> Iterator[FakeWeCom]:
    fake = FakeWeCom()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, name="fake-wecom", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
