"""Resolving share short links (xhslink.com, v.douyin.com) by asking the platform where they lead.

Off unless `KOC_RESOLVE_SHORT_LINKS` is on: most deployments cannot (or may not) call the
platforms, and a short link that stays unresolved is simply resolved by the reviewer instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import requests

log = logging.getLogger(__name__)
Resolver = Callable[[str], str | None]
MAX_REDIRECTS = 5


def final_url(url: str, *, timeout: float) -> str | None:
    """Where `url` redirects to, without reading the page; None when the platform won't say."""
    session = requests.Session()
    session.max_redirects = MAX_REDIRECTS
    try:
        with session.head(url, allow_redirects=True, timeout=timeout) as response:
            if response.status_code >= 400 or response.url == url:
                return None
            return response.url
    except requests.RequestException as exc:
        log.info("short link %s not resolved: %s", url, exc)
        return None
    finally:
        session.close()


def resolver(*, enabled: bool, timeout: float) -> Resolver | None:
    if not enabled:
        return None
    return lambda url: final_url(url, timeout=timeout)
