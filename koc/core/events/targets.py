"""Where a webhook may post: public addresses only (unless KOC_WEBHOOK_ALLOW_PRIVATE), checked
when it is registered and again on every connection, with no redirects followed.

The check at registration gives the admin a 422 naming the URL. The check on connection is the
one that holds: the host is resolved once, every address it gives must be allowed, and the socket
connects to that very address, so a name that resolves to a public address at registration and
to 127.0.0.1 or the cloud metadata address later (DNS rebinding) reaches nothing.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from koc.core.errors import DomainError


class TargetRefused(Exception):
    pass


class _Unresolvable(TargetRefused):
    pass


def _allow_private() -> bool:
    return bool(current_app.config["KOC_SETTINGS"].webhook_allow_private)


def address_allowed(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[tuple[Any, ...]]:
    """getaddrinfo of the host, refused whole when any of its addresses is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _Unresolvable(f"{host} does not resolve: {exc}") from exc
    if not _allow_private():
        refused = sorted({str(info[4][0]) for info in infos
                          if not address_allowed(str(info[4][0]))})
        if refused:
            raise TargetRefused(f"{host} resolves to a private, loopback or link-local "
                                f"address ({', '.join(refused)})")
    return infos


def check_url(url: str) -> None:
    """Refuse a webhook URL whose host is not a public address (422 naming `url`).

    A name that does not resolve yet is accepted (the receiver's DNS may come later); every
    delivery checks again where it connects."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise DomainError(422, "url: the port is not a number",
                          errors={"json": {"url": ["the port is not a number"]}}) from exc
    try:
        resolve(parts.hostname or "", port)
    except _Unresolvable:
        return
    except TargetRefused as exc:
        raise DomainError(422, f"url: {exc}", errors={"json": {"url": [str(exc)]}}) from exc


def _guarded_connection(address: tuple[str, int], timeout: Any = None,
                        source_address: Any = None, **_: Any) -> socket.socket:
    host, port = address
    last: OSError | None = None
    for family, kind, proto, _name, sockaddr in resolve(host, port):
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None and timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot connect to {host}")


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connection


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPConnection, req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(_GuardedHTTPSConnection, req)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        # None makes urllib answer the 3xx as an HTTPError: one failed attempt, not a hop to
        # an address nobody checked.
        return None


def opener() -> urllib.request.OpenerDirector:
    # No ProxyHandler: a proxy from the environment would connect where this guard cannot see.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _GuardedHTTPHandler,
                                       _GuardedHTTPSHandler, _NoRedirects)
