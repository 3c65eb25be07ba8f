"""WeCom's side of the senior group: the callback endpoint and the client built from settings.

`GET /wecom/callback` answers WeCom's URL verification (the decrypted `echostr`); `POST` takes
the encrypted events. Both check `msg_signature` before decrypting anything; a bad signature is
a 403 and nothing is read further. The event is handled in the request (a reconcile is one
`groupchat/get`); if WeCom cannot be reached the answer is 503, and WeCom sends the callback
again, which is safe: reconciling twice gives the same roster.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request

from koc.core.wecom.client import WeComClient, WeComError
from koc.core.wecom.crypto import CallbackError, MessageCrypto, encrypted_of, event_fields
from koc.tiers.services import wecom_groups

log = logging.getLogger(__name__)
wecom_blueprint = Blueprint("wecom", __name__)
MAX_CALLBACK_BYTES = 64 * 1024


def wecom_client() -> WeComClient:
    settings = current_app.config["KOC_SETTINGS"]
    if not settings.wecom_enabled:
        raise RuntimeError("WeCom is not configured (KOC_WECOM_CORP_ID, KOC_WECOM_AGENT_SECRET)")
    return WeComClient(api_url=settings.wecom_api_url, corp_id=settings.wecom_corp_id,
                       secret=settings.wecom_agent_secret)


def _crypto() -> MessageCrypto | None:
    settings = current_app.config["KOC_SETTINGS"]
    if not (settings.wecom_callback_token and settings.wecom_aes_key and settings.wecom_corp_id):
        return None
    return MessageCrypto(settings.wecom_callback_token, settings.wecom_aes_key,
                         settings.wecom_corp_id)


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


def _signed_params() -> tuple[str, str, str] | None:
    args = request.args
    params = (args.get("msg_signature", ""), args.get("timestamp", ""), args.get("nonce", ""))
    if not all(params) or max(map(len, params)) > 64:
        return None
    return params


def _encrypted_body() -> str:
    if (request.content_length or 0) > MAX_CALLBACK_BYTES:
        raise CallbackError("body too large")
    return encrypted_of(request.get_data(cache=False)[:MAX_CALLBACK_BYTES])


@wecom_blueprint.route("/wecom/callback", methods=["GET", "POST"])
def callback() -> Response:
    crypto = _crypto()
    if crypto is None:
        return _text("WeCom callbacks are not configured", 404)
    params = _signed_params()
    if params is None:
        return _text("msg_signature, timestamp and nonce are required", 400)
    try:
        if request.method == "GET":
            return _text(crypto.open(*params, request.args.get("echostr", "")))
        event = event_fields(crypto.open(*params, _encrypted_body()))
    except CallbackError as exc:
        log.warning("WeCom callback refused: %s", exc)
        return _text("invalid callback", 403)
    return _handle(event)


def _handle(event: dict[str, str]) -> Response:
    settings = current_app.config["KOC_SETTINGS"]
    try:
        result = wecom_groups.handle_event(wecom_client(), event,
                                           senior_chat_ids=settings.wecom_senior_chat_ids)
    except (WeComError, OSError) as exc:
        log.warning("WeCom callback %s not reconciled yet: %s", event.get("Event"), exc)
        return _text("try again", 503)
    if result:
        log.info("WeCom %s on %s: %s", event.get("Event"), event.get("ChatId"), result)
    return _text("success")
