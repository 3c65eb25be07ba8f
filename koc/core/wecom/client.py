"""The WeCom server API client: access token cached and refreshed, documented errors retried.

- `gettoken?corpid=&corpsecret=` gives a token valid `expires_in` seconds (7200); it is kept
  in the process and fetched again a little before it ends, never per call. WeCom hands out the
  same token while it is valid, so several processes each caching one do not fight.
- errcode 40014 (invalid access_token), 42001 (expired) and 40001 (invalid credential): the
  token is dropped, fetched again and the call retried once.
- errcode -1 (system busy) and 45009 / 45033 (frequency limits): retried with exponential
  backoff, then `WeComError`.
Error codes: https://developer.work.weixin.qq.com/document/path/90313 ; token:
https://developer.work.weixin.qq.com/document/path/91039 .
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
BUSY_ERRORS = frozenset({-1, 45009, 45033})
# Fetch a new token this long before the old one ends.
TOKEN_MARGIN = 300


class WeComError(RuntimeError):
    def __init__(self, errcode: int, errmsg: str, path: str) -> None:
        super().__init__(f"WeCom {path}: errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


@dataclass
class _CachedToken:
    value: str
    expires_at: float


_tokens: dict[tuple[str, str, str], _CachedToken] = {}
_tokens_lock = threading.Lock()


def forget_tokens() -> None:
    """Drop every cached token (tests; a rotated secret)."""
    with _tokens_lock:
        _tokens.clear()


@dataclass
class WeComClient:
    api_url: str
    corp_id: str
    secret: str = field(repr=False)
    timeout: float = 10.0
    attempts: int = 4
    backoff: float = 0.5
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    @property
    def _cache_key(self) -> tuple[str, str, str]:
        return (self.api_url, self.corp_id, self.secret)

    def access_token(self, *, fresh: bool = False) -> str:
        with _tokens_lock:
            cached = _tokens.get(self._cache_key)
            if cached is not None and not fresh and cached.expires_at > self.clock():
                return cached.value
            data = self._get("/cgi-bin/gettoken",
                             {"corpid": self.corp_id, "corpsecret": self.secret})
            token = data["access_token"]
            lifetime = int(data.get("expires_in", 7200))
            _tokens[self._cache_key] = _CachedToken(
                token, self.clock() + max(60, lifetime - TOKEN_MARGIN))
            return token

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        return self._with_backoff(path, lambda: self.session.get(
            self.api_url + path, params=params, timeout=self.timeout))

    def _with_backoff(self, path: str, send: Callable[[], requests.Response]) -> dict[str, Any]:
        for attempt in range(self.attempts):
            response = send()
            response.raise_for_status()
            data = response.json()
            errcode = int(data.get("errcode", 0))
            if errcode == 0:
                return data
            if errcode in BUSY_ERRORS and attempt + 1 < self.attempts:
                delay = self.backoff * 2 ** attempt
                log.info("WeCom %s busy (errcode %s), retrying in %.1fs", path, errcode, delay)
                self.sleep(delay)
                continue
            raise WeComError(errcode, str(data.get("errmsg", "")), path)
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST `body` to `path` with the access token; the answer's JSON when errcode is 0."""
        refreshed = False
        while True:
            token = self.access_token(fresh=refreshed)
            try:
                return self._with_backoff(path, lambda t=token: self.session.post(  # type: ignore[misc]
                    self.api_url + path, params={"access_token": t}, json=body,
                    timeout=self.timeout))
            except WeComError as exc:
                if exc.errcode in TOKEN_ERRORS and not refreshed:
                    refreshed = True
                    continue
                raise

    # --- the customer-group endpoints the programme uses ---------------------------------

    def add_join_way(self, *, chat_ids: list[str], state: str, remark: str,
                     room_base_name: str | None = None) -> str:
        """A QR-code join method for the groups; returns its config_id."""
        body: dict[str, Any] = {"scene": 2, "remark": remark[:30], "chat_id_list": chat_ids,
                                "state": state, "auto_create_room": 1 if room_base_name else 0}
        if room_base_name:
            body.update(room_base_name=room_base_name[:40], room_base_id=1)
        return str(self.call("/cgi-bin/externalcontact/groupchat/add_join_way",
                             body)["config_id"])

    def get_join_way(self, config_id: str) -> dict[str, Any]:
        return dict(self.call("/cgi-bin/externalcontact/groupchat/get_join_way",
                              {"config_id": config_id})["join_way"])

    def del_join_way(self, config_id: str) -> None:
        self.call("/cgi-bin/externalcontact/groupchat/del_join_way", {"config_id": config_id})

    def group_chat(self, chat_id: str) -> dict[str, Any]:
        """The group's details: owner, member_list (userid, type, join_time, join_scene,
        invitor, state, unionid), member_version."""
        return dict(self.call("/cgi-bin/externalcontact/groupchat/get",
                              {"chat_id": chat_id, "need_name": 0})["group_chat"])

    def add_msg_template(self, *, sender: str, chat_ids: list[str], text: str
                         ) -> dict[str, Any]:
        """A group-message task for `sender`'s groups; WeCom asks the sender to confirm it."""
        return self.call("/cgi-bin/externalcontact/add_msg_template", {
            "chat_type": "group", "sender": sender, "chat_id_list": chat_ids,
            "allow_select": False, "text": {"content": text}})
