"""WeCom callback messages: the signature and the AES payload (the WXBizMsgCrypt format).

- `msg_signature` = SHA1 of the token, the timestamp, the nonce and the encrypted text, sorted
  and concatenated.
- The AES key is base64 of the 43-character EncodingAESKey plus '=' (32 bytes); AES-256-CBC
  with the key's first 16 bytes as IV.
- The plaintext is 16 random bytes, the message length (4 bytes, network order), the message
  and the receiver id (the corp id), padded PKCS#7 to a multiple of 32 bytes.

Ported from WeCom's published sample (WXBizMsgCrypt); see the callback docs
https://developer.work.weixin.qq.com/document/path/90968 and /90930.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class CallbackError(ValueError):
    """A callback that is not WeCom's: bad signature, undecryptable, or for another corp."""


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode(),
                        usedforsecurity=False).hexdigest()


def _pad(data: bytes) -> bytes:
    amount = BLOCK - len(data) % BLOCK
    return data + bytes([amount]) * amount


def _unpad(data: bytes) -> bytes:
    if not data:
        raise CallbackError("empty payload")
    amount = data[-1]
    if not 1 <= amount <= BLOCK or data[-amount:] != bytes([amount]) * amount:
        raise CallbackError("bad padding")
    return data[:-amount]


@dataclass(frozen=True)
class MessageCrypto:
    token: str
    aes_key: str  # the 43-character EncodingAESKey
    receive_id: str  # the corp id

    @property
    def _key(self) -> bytes:
        return base64.b64decode(self.aes_key + "=")

    def _cipher(self) -> Cipher:
        key = self._key
        return Cipher(algorithms.AES(key), modes.CBC(key[:16]))

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, (msg_signature or "").lower()):
            raise CallbackError("bad msg_signature")

    def decrypt(self, encrypted: str) -> str:
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallbackError("payload is not base64") from exc
        if not raw or len(raw) % 16:
            raise CallbackError("payload is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = _unpad(decryptor.update(raw) + decryptor.finalize())
        if len(plain) < 20:
            raise CallbackError("payload too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, receive_id = plain[20:20 + length], plain[20 + length:]
        if len(message) != length:
            raise CallbackError("payload length does not match")
        if receive_id.decode(errors="replace") != self.receive_id:
            raise CallbackError("payload is for another receiver")
        return message.decode()

    def encrypt(self, message: str, *, random16: bytes | None = None) -> str:
        body = message.encode()
        plain = ((random16 or secrets.token_bytes(16)) + struct.pack(">I", len(body)) + body
                 + self.receive_id.encode())
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(_pad(plain)) + encryptor.finalize()).decode()

    def open(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> str:
        """Check the signature, then decrypt: the plaintext of a genuine callback."""
        self.verify(msg_signature, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def seal(self, message: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """(encrypted, msg_signature) for a message: what WeCom sends (the tests' fake)."""
        encrypted = self.encrypt(message)
        return encrypted, signature(self.token, timestamp, nonce, encrypted)


def encrypted_of(body: bytes) -> str:
    """The `Encrypt` element of a POSTed callback envelope (ToUserName, AgentID, Encrypt)."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - small body, no entities expanded by expat
    except ET.ParseError as exc:
        raise CallbackError("body is not XML") from exc
    encrypted = root.findtext("Encrypt")
    if not encrypted:
        raise CallbackError("no Encrypt element")
    return encrypted.strip()


def event_fields(xml_text: str) -> dict[str, str]:
    """A decrypted event as a flat dict of its elements' text (MemChangeList joined by ',')."""
    try:
        root = ET.fromstring(xml_text)  # noqa: S314 - decrypted from a verified message
    except ET.ParseError as exc:
        raise CallbackError("event is not XML") from exc
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            fields[child.tag] = ",".join((item.text or "").strip() for item in child)
        else:
            fields[child.tag] = (child.text or "").strip()
    return fields
